package faults

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Scenario 2: kill -9 of notify-webhook while it works through a stream of
// alerts, restarted with the same credentials: every alert must be POSTed;
// the duplicates are counted: redeliveries of alerts it had POSTed but not
// yet acknowledged when it died are recognised by its Once helper, so only
// a kill between a POST and its mark could repeat one.
func TestPluginKill(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	sk := newSink(t)
	nw := b.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))

	n := scaled(5000)
	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() { h.run(ctx, load{c: b.admin(t), n: n, workers: 16, prefix: "pk"}); close(done) }()

	// Mid-stream: once half the alerts are POSTed.
	waitFor(t, "half the alerts POSTed", waitLimit, func() bool { return sk.distinct("/ok", "fired", nil) >= n/2 })
	posted, offered := sk.total(), h.offered.Load()
	pid := nw.p.pid()
	nw.p.kill9(t)
	b.restartPlugin(t, nw)
	<-done
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %d of %d answered", h.acked.Load(), n)
	}
	js := b.jetstream(t)
	waitFor(t, "every alert POSTed and notify-webhook's consumer idle", 3*time.Minute, func() bool {
		return sk.distinct("/ok", "fired", nil) >= int(h.acked.Load()) && consumerIdle(t, js, "notify-webhook")
	})
	v := check(h, storedAlerts(t, js, "io.plugbus.alert.v1.fired"), sk.counts("/ok", "fired"))
	v.Scenario = "plugin-kill"
	v.Notes = fmt.Sprintf("killed pid %d after %d POSTs (%d alerts offered); duplicates: %s; notify-webhook POSTs through Plugin.OnceByEventID (a redelivery after its mark is not POSTed again; one killed between a POST and its mark would be)",
		pid, posted, offered, v.dupNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
	if *v.Delivered != n {
		t.Errorf("%d of %d alerts POSTed", *v.Delivered, n)
	}
}
