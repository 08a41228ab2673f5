package faults

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// heavy skips a scenario under -short: the suite runs real processes and
// big loads (make test-faults runs it).
func heavy(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault scenario: runs real processes and loads (make test-faults)")
	}
}

// scaled is n times $PLUGBUS_FAULTS_SCALE (default 1), for quick local
// iterations on a scenario; the table is always measured at scale 1.
func scaled(n int) int {
	if s, err := strconv.ParseFloat(os.Getenv("PLUGBUS_FAULTS_SCALE"), 64); err == nil && s > 0 {
		return max(1, int(float64(n)*s))
	}
	return n
}

// Scenario 1: kill -9 of the broker at 10%, 50% and 90% of a 20,000-alert
// load, each restart on the same data dir and port while the workers keep
// retrying what they got no answer to (same idempotency key). Every
// acknowledged alert must be stored and POSTed by notify-webhook, and
// nothing stored that no request asked for.
func TestBrokerKill(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	sk := newSink(t)
	nw := b.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	_ = nw

	n := scaled(20000)
	points := []int{n / 10, n / 2, n * 9 / 10}
	h := newHistory()
	trigger := make(chan int, len(points))
	var once [3]sync.Once
	ld := load{c: b.admin(t), n: n, workers: 16, prefix: "bk", timeout: 5 * time.Second,
		offered: func(k int) {
			for i, p := range points {
				if k == p {
					once[i].Do(func() { trigger <- k })
				}
			}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { h.run(ctx, ld); close(done) }()

	var kills []string
	for range points {
		var k int
		select {
		case k = <-trigger:
		case <-done:
			t.Fatalf("the load ended before every kill point was reached")
		}
		acked := h.acked.Load()
		pid := b.broker.pid()
		b.broker.kill9(t)
		down := time.Now()
		b.start(t)
		kills = append(kills, fmt.Sprintf("#%d at %d offered/%d acked (pid %d, back in %.1fs)", len(kills)+1, k, acked, pid, time.Since(down).Seconds()))
	}
	<-done
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %d of %d answered", h.acked.Load(), n)
	}
	loadTime := time.Since(start)

	// Delivery: wait until every acknowledged alert is POSTed and the
	// consumer has nothing left to deliver or redeliver.
	acked := map[string]bool{}
	for id, o := range h.snapshot() {
		if o.OK {
			acked[id] = true
		}
	}
	js := b.jetstream(t)
	waitFor(t, "every acknowledged alert POSTed and notify-webhook's consumer idle", 3*time.Minute, func() bool {
		return sk.distinct("/ok", "fired", acked) == len(acked) && consumerIdle(t, js, "notify-webhook")
	})
	v := check(h, storedAlerts(t, js, "io.plugbus.alert.v1.fired"), sk.counts("/ok", "fired"))
	v.Scenario = "broker-kill"
	v.Notes = fmt.Sprintf("16 workers; kills %v; %s; %s; load %.0f s", kills, h.retriesNote(), v.dupNote(), loadTime.Seconds())
	if odd := sk.oddBodies(); len(odd) > 0 {
		t.Errorf("%d POSTs name no alert, e.g. %.200s", len(odd), odd[0])
	}
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}
