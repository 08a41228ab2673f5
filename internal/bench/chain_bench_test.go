package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// BenchmarkHookChain: a job.pre_deploy chain of 1, 5 and 20 steps run by
// the broker (steps answered by plain micro services, so the figure is the
// broker's share) against the same number of sequential raw NATS
// request/reply round trips, in-process. The bus sub-benchmark reports the
// chain time the broker records (chain-µs/op) and, against the raw one of
// the same size, the time added per step (added-µs/step).
func BenchmarkHookChain(b *testing.B) {
	for _, steps := range []int{1, 5, 20} {
		b.Run(fmt.Sprintf("steps=%d", steps), func(b *testing.B) {
			bus := benchBus(b)
			ctx := context.Background()
			client, err := bus.Connect(InProcess, "client")
			if err != nil {
				b.Fatal(err)
			}
			pnc, err := bus.Connect(InProcess, "hook-plugins")
			if err != nil {
				b.Fatal(err)
			}
			reply := mustJSON(schemas.HookResponse{Outcome: schemas.HookContinue})
			subjects := make([]string, steps)
			for i := range steps {
				m := hookManifest(i)
				if _, err := startFakePlugin(pnc, bus.Prefix, m, reply); err != nil {
					b.Fatal(err)
				}
				if err := pnc.Flush(); err != nil {
					b.Fatal(err)
				}
				if _, err := register(ctx, client, bus.Prefix, m); err != nil {
					b.Fatal(err)
				}
				subjects[i] = fmt.Sprintf("bench.raw.%d", i)
				if err := rawResponder(bus, subjects[i], reply); err != nil {
					b.Fatal(err)
				}
			}
			var rawPerOp time.Duration
			b.Run("raw", func(b *testing.B) {
				body := mustJSON(schemas.HookRequest{Hook: schemas.HookJobPreDeploy, Payload: json.RawMessage(`{"name":"web"}`)})
				for b.Loop() {
					for _, s := range subjects {
						if _, err := client.Request(s, body, 10*time.Second); err != nil {
							b.Fatal(err)
						}
					}
				}
				rawPerOp = b.Elapsed() / time.Duration(b.N)
			})
			b.Run("bus", func(b *testing.B) {
				var chainMs float64
				i := 0
				for b.Loop() {
					var resp schemas.JobResponse
					if err := call(ctx, client, bus.Prefix, schemas.APIJobsDeploy,
						schemas.JobDeployRequest{Name: "web", Version: fmt.Sprint(i % 100), Image: "x"}, &resp); err != nil {
						b.Fatal(err)
					}
					if len(resp.Chains) != 1 || len(resp.Chains[0].Steps) != steps {
						b.Fatalf("chains: %+v", resp.Chains)
					}
					chainMs += resp.Chains[0].DurationMs
					i++
				}
				chainUs := chainMs * 1000 / float64(b.N)
				b.ReportMetric(chainUs, "chain-µs/op")
				if rawPerOp > 0 {
					b.ReportMetric((chainUs-float64(rawPerOp.Microseconds()))/float64(steps), "added-µs/step")
				}
			})
		})
	}
}
