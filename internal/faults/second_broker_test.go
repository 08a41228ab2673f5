package faults

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// Scenario 7: a second broker started on the data dir of a running one,
// in the middle of a load. It must exit non-zero naming the first one's
// pid; the first keeps serving, and nothing of the load is lost.
func TestSecondBroker(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	sk := newSink(t)
	b.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	n := scaled(2000)
	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	midway := make(chan struct{})
	done := make(chan struct{})
	go func() {
		h.run(ctx, load{c: b.admin(t), n: n, workers: 16, prefix: "sb", offered: func(k int) {
			if k == n/4 {
				close(midway)
			}
		}})
		close(done)
	}()
	<-midway
	second := startProc(t, "broker (second)", filepath.Join(b.bin, "broker"), nil, nil,
		"--data-dir", b.dataDir, "--listen", freeAddr(t), "--http", freeAddr(t), "--log-format", "json")
	err := second.wait(t, time.Minute)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("the second broker on the data dir exited with %v, want a non-zero exit", err)
	}
	out := second.out.String()
	wantPid := fmt.Sprintf("broker pid %d", b.broker.pid())
	if !strings.Contains(out, wantPid) {
		t.Errorf("the second broker's error does not name the first (%q):\n%s", wantPid, out)
	}
	if b.broker.exited() || !b.healthy() {
		t.Fatalf("the first broker stopped serving after the second one tried its data dir")
	}
	<-done
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %d of %d answered", h.acked.Load(), n)
	}
	js := b.jetstream(t)
	acked := map[string]bool{}
	for id, o := range h.snapshot() {
		if o.OK {
			acked[id] = true
		}
	}
	waitFor(t, "every acknowledged alert POSTed and the consumer idle", waitLimit, func() bool {
		return sk.distinct("/ok", "fired", acked) == len(acked) && consumerIdle(t, js, "notify-webhook")
	})
	v := check(h, storedAlerts(t, js, schemas.TypeAlertFired), sk.counts("/ok", "fired"))
	v.Scenario = "second-broker"
	first := strings.TrimSpace(out)
	if i := strings.LastIndex(first, "\n"); i >= 0 {
		first = first[i+1:]
	}
	first = strings.ReplaceAll(first, b.dataDir, "DATA_DIR")
	code := -1
	if ee != nil {
		code = ee.ExitCode()
	}
	v.Notes = fmt.Sprintf("started at %d of %d alerts offered; it exited %d saying %q; the first kept serving; %s", n/4, n, code, first, v.dupNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}
