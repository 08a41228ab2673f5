package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// Scenario 8: SIGTERM of the broker while requests wait inside a slow
// alert.pre_notify hook (1s per call). The requests in flight complete —
// answered with success by the stopping broker, on their first attempt,
// before it exits — and the later ones, which find nothing answering, are
// retried by the client until the broker is back: nothing lost, and the
// hook runs for every one of them (its plugin reconnecting is waited for).
func TestSigtermDrain(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t, "--drain-timeout", "30s")
	hl := newLines()
	b.startPlugin(t, "slow-hook", "hookplugin",
		[]string{"HOOKPLUGIN_NAME=slow-hook", "HOOKPLUGIN_POLICY=ignore", "HOOKPLUGIN_TIMEOUT=5s", "HOOKPLUGIN_DELAY=1s"}, hl.add)
	n := scaled(240)
	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	third := make(chan struct{})
	done := make(chan struct{})
	go func() {
		h.run(ctx, load{c: b.admin(t), n: n, workers: 16, prefix: "st", timeout: 10 * time.Second, offered: func(k int) {
			if k == n/3 {
				close(third)
			}
		}})
		close(done)
	}()
	<-third
	waitFor(t, "requests in flight inside the hook", waitLimit, func() bool { return len(hl.held()) >= 8 })
	inflight := hl.held()
	old := b.broker
	old.term(t)
	termAt := time.Now()
	exitErr := old.wait(t, 90*time.Second)
	if exitErr != nil {
		t.Errorf("the broker exited with %v after SIGTERM, want 0", exitErr)
	}
	drained := old.end.Sub(termAt)
	b.start(t)
	<-done
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %d of %d answered", h.acked.Load(), n)
	}

	ops := h.snapshot()
	completed, afterRestart := 0, 0
	for obj := range inflight {
		id := strings.TrimPrefix(obj, "alert/")
		o, ok := ops[id]
		switch {
		case !ok:
			t.Errorf("%s was in the hook but is no request of the load", obj)
		case !o.OK || o.Attempts != 1 || o.At.After(old.end):
			t.Errorf("%s was in flight at SIGTERM: answered ok=%v (%s) after %d attempts, %s after the old broker exited; want success on the first attempt, before",
				id, o.OK, o.Code, o.Attempts, o.At.Sub(old.end))
		default:
			completed++
		}
	}
	for _, o := range ops {
		if o.OK && o.At.After(old.end) && o.Sent.Before(old.end) {
			afterRestart++
		}
	}
	// The hook plugin reconnects to the restarted broker's NATS a moment
	// after the broker serves again: a step that finds no responder then
	// is tried again for a while, not skipped.
	if note := h.stepsNote(); strings.Contains(note, "no_responders") {
		t.Errorf("hook steps skipped for no responder after the restart: %s", note)
	}
	v := check(h, storedAlerts(t, b.jetstream(t), schemas.TypeAlertFired), nil)
	v.Scenario = "sigterm-drain"
	v.Notes = fmt.Sprintf("hook 1s per call (policy ignore); SIGTERM with %d requests inside the hook: %d completed during the drain (%.1f s, exit %v); %d sent before the exit were answered after the restart (the client retries while nothing answers); the hook saw %d calls, steps: %s; %s",
		len(inflight), completed, drained.Seconds(), exitErr, afterRestart, hl.count("HELD"), h.stepsNote(), h.retriesNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}
