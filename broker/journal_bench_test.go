package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// BenchmarkChainJournal: a hook chain of 1 and 5 steps run by the broker
// (steps answered by fake plugins on a nats-server of the test), with and
// without its journal. chain-µs/op is what the caller waits for: with the
// journal, the operation's run entry (once per operation) and one awaited
// write per step; journal-µs/step is the difference to the run without,
// per step. after-reply-µs/op is the answer's record, written after the
// reply has gone.
func BenchmarkChainJournal(b *testing.B) {
	s := startServer(b)
	l := zerolog.Nop()
	tb := startBroker(b, Config{NATSURL: s.ClientURL(), Logger: &l})
	// A 5-step chain on alert.pre_notify, a 1-step one on
	// machine.pre_action.
	hooks := map[int]string{1: schemas.HookMachinePreAction, 5: schemas.HookAlertPreNotify}
	for i := range 6 {
		hook := schemas.HookAlertPreNotify
		if i == 5 {
			hook = schemas.HookMachinePreAction
		}
		m := manifest(fmt.Sprintf("bench-%d", i), "1.0.0")
		m.Hooks = []schemas.HookSpec{{Hook: hook, Priority: intp(i)}}
		p := newFakePlugin(b, s.ClientURL(), m)
		p.onHook(hook, cont)
		p.start("plugbus")
		p.register(b, tb, nil)
	}
	req := schemas.AlertFireRequest{ID: "bench", Severity: "warning", Summary: "s"}
	ok := &nats.Msg{Header: nats.Header{}, Data: []byte(`{}`)}
	for _, steps := range []int{1, 5} {
		hook := hooks[steps]
		if n := len(tb.b.reg.chains()[hook]); n != steps {
			b.Fatalf("%s has %d steps, want %d", hook, n, steps)
		}
		var perOp [2]float64
		for k, journal := range []bool{false, true} {
			b.Run(fmt.Sprintf("steps=%d/journal=%v", steps, journal), func(b *testing.B) {
				ctx := context.Background()
				var caller, after time.Duration
				for b.Loop() {
					cctx := ctx
					var run *opRun
					if journal {
						op := nuid.Next()
						run = tb.b.journal.newOpRun(op, schemas.APIAlertsFire, wire.APISubject("plugbus", schemas.APIAlertsFire), op, []byte(`{}`), "", time.Time{})
						cctx = withOpRun(withOp(ctx, op), run)
					}
					t0 := time.Now()
					res, err := tb.b.runChain(cctx, hook, "alert/bench", req, nil)
					if err != nil || len(res.record.Steps) != steps {
						b.Fatalf("%v %+v", err, res.record)
					}
					t1 := time.Now()
					// The answer's record: written after the reply.
					run.finish(cctx, ok)
					caller += t1.Sub(t0)
					after += time.Since(t1)
				}
				perOp[k] = float64(caller.Microseconds()) / float64(b.N)
				b.ReportMetric(perOp[k], "chain-µs/op")
				if journal {
					b.ReportMetric(float64(after.Microseconds())/float64(b.N), "after-reply-µs/op")
					if perOp[0] > 0 {
						b.ReportMetric((perOp[1]-perOp[0])/float64(steps), "journal-µs/step")
					}
				}
			})
		}
	}
}
