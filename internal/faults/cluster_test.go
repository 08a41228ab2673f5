package faults

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// deliveredAll waits until every acknowledged alert of h is POSTed at the
// sink and notify-webhook's consumer is idle, then checks the history
// against the stream and the sink.
func (c *cluster) checkDelivered(t *testing.T, h *history, sk *sink) verdict {
	t.Helper()
	acked := map[string]bool{}
	for id, o := range h.snapshot() {
		if o.OK {
			acked[id] = true
		}
	}
	js := c.jetstream(t)
	waitFor(t, "every acknowledged alert POSTed and notify-webhook's consumer idle", 3*time.Minute, func() bool {
		return sk.distinct("/ok", "fired", acked) == len(acked) && consumerIdle(t, js, "notify-webhook")
	})
	return check(h, storedAlerts(t, js, schemas.TypeAlertFired), sk.counts("/ok", "fired"))
}

// stallNote gives the longest stall and keeps it in the row.
func stallNote(v *verdict, stall time.Duration) string {
	s := stall.Seconds()
	v.StallSeconds = &s
	return fmt.Sprintf("longest stall %.1f s", s)
}

// Scenario cluster-node-restart: three NATS nodes, two brokers, R3
// streams; alerts offered at 1,000/s for a minute by 32 workers that
// retry what they got no answer to; every 20 s one node is killed
// (kill -9) and started again on its store, in turn, each once the
// cluster is current again. Every acknowledged alert must be stored and
// POSTed.
func TestClusterNodeRestart(t *testing.T) {
	heavy(t)
	start := time.Now()
	c := newCluster(t, 2)
	sk := newSink(t)
	c.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))

	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan int)
	loadStart := time.Now()
	go func() {
		done <- h.paced(ctx, load{c: c.admin(t), n: 1 << 30, workers: 32, prefix: "nr"}, scaled(1000), stop)
	}()
	period := 20 * time.Second
	tick := time.NewTicker(period)
	var restarts []string
	for i := range 3 {
		<-tick.C // the scenario's schedule, not a wait for a condition
		c.waitJetStream(t)
		n := c.nodes[i]
		acked := h.acked.Load()
		c.killNode(t, i)
		down := time.Now()
		c.startNode(t, i)
		restarts = append(restarts, fmt.Sprintf("%s at %.0f s (%d acked, back in %.1f s)", n.name, down.Sub(loadStart).Seconds(), acked, time.Since(down).Seconds()))
	}
	<-tick.C
	tick.Stop()
	close(stop)
	offered := <-done
	loadEnd := time.Now()
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %s", h.unansweredNote())
	}
	c.waitJetStream(t)
	v := c.checkDelivered(t, h, sk)
	v.Scenario = "cluster-node-restart"
	secs := loadEnd.Sub(loadStart).Seconds()
	v.Notes = fmt.Sprintf("3 nodes, 2 brokers, R3; %d alerts offered in %.0f s (%.0f/s, target 1000/s), %.0f acked/s; kill -9 and restart of %s; %s; %s; %s",
		offered, secs, float64(offered)/secs, float64(h.acked.Load())/secs, strings.Join(restarts, ", "),
		stallNote(&v, stalls(h, loadStart, loadEnd)), h.retriesNote(), v.dupNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}

// probe is one request sent while the cluster has no quorum.
type probe struct {
	took time.Duration
	code string
	// definite: the answer says nothing was done (details.committed is
	// false), so it need not be asked again.
	definite bool
	ok       bool
}

// Scenario cluster-quorum-loss: two of the three NATS nodes are killed
// under load. While they are down, alerts.fire requests (each once) and
// direct JetStream publishes (as a plugin's) must fail with an answer —
// the broker's unavailable — never succeed; the figures are how fast.
// Then the nodes come back; the load's retries and the probes whose
// answer left the outcome open are asked again with their keys; every
// acknowledged alert must be stored and POSTed, and no refused one
// stored.
func TestClusterQuorumLoss(t *testing.T) {
	heavy(t)
	start := time.Now()
	c := newCluster(t, 2)
	sk := newSink(t)
	c.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	admin := c.admin(t)

	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		done <- h.paced(ctx, load{c: admin, n: 1 << 30, workers: 16, prefix: "ql"}, scaled(200), stop)
	}()
	h.waitAcked(t, "500 alerts acknowledged", 500)

	// Node 0 stays; the brokers and clients on the others move to it.
	c.killNode(t, 1)
	c.killNode(t, 2)
	down := time.Now()
	ackedAtLoss := h.acked.Load()

	// Probes: alerts.fire once each, and direct publishes, until 20 of
	// each have an answer.
	var probes []probe
	var probeOps []*op
	js := c.jetstream(t)
	var pubs []probe
	for i := 0; len(probes) < 20 || len(pubs) < 20; i++ {
		if len(probes) < 20 {
			o := &op{ID: fmt.Sprintf("ql-probe-%03d", i), Key: fmt.Sprintf("ql-probe-key-%03d", i), Sent: time.Now()}
			h.mu.Lock()
			h.ops[o.ID] = o
			h.mu.Unlock()
			h.offered.Add(1)
			pctx, pcancel := context.WithTimeout(client.WithIdempotencyKey(ctx, o.Key), 10*time.Second)
			t0 := time.Now()
			_, err := admin.FireAlert(pctx, schemas.AlertFireRequest{ID: o.ID, Severity: schemas.SeverityWarning, Summary: "probe"})
			pcancel()
			p := probe{took: time.Since(t0), code: errCode(err), ok: err == nil}
			var e *schemas.Error
			if errors.As(err, &e) && e.Details[schemas.DetailCommitted] == false {
				p.definite = true
				o.Answered, o.Code, o.At = true, e.Code, time.Now()
			}
			if err == nil {
				o.Answered, o.OK, o.At = true, true, time.Now()
				h.acked.Add(1)
			}
			probes = append(probes, p)
			probeOps = append(probeOps, o)
		}
		if len(pubs) < 20 {
			// A plugin-style event on the stream's own subjects.
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			took, err := pubTimed(pctx, js, wire.PluginEventSubject(wire.DefaultPrefix, "probe")+".v1.checked", []byte(`{}`))
			pcancel()
			pubs = append(pubs, probe{took: took, ok: err == nil, code: pubCode(err)})
		}
	}
	outage := time.Since(down)

	c.startNode(t, 1)
	c.startNode(t, 2)
	c.waitJetStream(t)
	back := time.Since(down)
	h.waitAcked(t, "500 more alerts acknowledged after the quorum is back", ackedAtLoss+500)
	close(stop)
	offered := <-done
	// The probes whose answer left the outcome open are asked again,
	// with their keys, until they are answered.
	for _, o := range probeOps {
		if !o.Answered {
			h.settle(ctx, admin, o, schemas.AlertFireRequest{ID: o.ID, Severity: schemas.SeverityWarning, Summary: "probe"})
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %s", h.unansweredNote())
	}

	codes := func(ps []probe) string {
		n := map[string]int{}
		for _, p := range ps {
			if p.ok {
				n["ok"]++
			} else {
				n[p.code]++
			}
		}
		var parts []string
		for k, v := range n {
			parts = append(parts, fmt.Sprintf("%d %s", v, k))
		}
		sort.Strings(parts)
		return strings.Join(parts, ", ")
	}
	lat := func(ps []probe) string {
		ds := make([]time.Duration, len(ps))
		for i, p := range ps {
			ds[i] = p.took
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return fmt.Sprintf("median %.2f s, max %.2f s", ds[len(ds)/2].Seconds(), ds[len(ds)-1].Seconds())
	}
	definite := 0
	for i, p := range probes {
		if p.ok {
			t.Errorf("probe %d succeeded while the cluster had no quorum", i)
		}
		if p.definite {
			definite++
		}
	}
	brokerAnswered := 0
	for _, p := range probes {
		if p.code == schemas.CodeUnavailable {
			brokerAnswered++
		}
	}
	if brokerAnswered == 0 {
		t.Errorf("no alerts.fire during the outage was answered unavailable by a broker (%s): clients were left to time out", codes(probes))
	}
	for i, p := range pubs {
		if p.ok {
			t.Errorf("publish %d was acknowledged while the cluster had no quorum", i)
		}
	}

	v := c.checkDelivered(t, h, sk)
	v.Scenario = "cluster-quorum-loss"
	v.Notes = fmt.Sprintf("3 nodes, 2 brokers, R3, load 200/s; n1 and n2 killed at %d acked, out %.1f s, current again after %.1f s; during the outage: 20 alerts.fire sent once answered %s (%s; %d said nothing was done, the others were asked again after), 20 direct JetStream publishes answered %s (%s); %d offered by the load; %s; %s; %s",
		ackedAtLoss, outage.Seconds(), back.Seconds(), codes(probes), lat(probes), definite, codes(pubs), lat(pubs), offered,
		stallNote(&v, back), h.retriesNote(), v.dupNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}

// pubCode names a JetStream publish error for the notes.
func pubCode(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return "no stream response"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "timeout"
	}
	return err.Error()
}

// Scenario cluster-leader-paused: the node leading PLUGBUS_EVENTS is
// frozen (SIGSTOP: to its peers and clients it is cut off, and it does
// not step down) under load, until the others elected a new leader and
// 1,000 more alerts were acknowledged; then it resumes, a stale leader
// that must not lose or invent anything.
func TestClusterLeaderPaused(t *testing.T) {
	heavy(t)
	start := time.Now()
	c := newCluster(t, 2)
	sk := newSink(t)
	c.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan int)
	loadStart := time.Now()
	go func() {
		done <- h.paced(ctx, load{c: c.admin(t), n: 1 << 30, workers: 32, prefix: "lp"}, scaled(500), stop)
	}()
	h.waitAcked(t, "1000 alerts acknowledged", 1000)
	leader := c.streamLeader(t, schemas.StreamEvents)
	i := c.nodeIndex(leader)
	if i < 0 {
		t.Fatalf("no leader of %s (%q)", schemas.StreamEvents, leader)
	}
	acked := h.acked.Load()
	c.pauseNode(t, i)
	paused := time.Now()
	var newLeader string
	waitFor(t, "a new leader of "+schemas.StreamEvents, waitLimit, func() bool {
		newLeader = c.streamLeader(t, schemas.StreamEvents)
		return newLeader != "" && newLeader != leader
	})
	elected := time.Since(paused)
	h.waitAcked(t, "500 more alerts acknowledged", acked+500)
	c.resumeNode(t, i)
	held := time.Since(paused)
	c.waitJetStream(t)
	h.waitAcked(t, "500 more alerts after the resume", acked+1000)
	close(stop)
	offered := <-done
	loadEnd := time.Now()
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %s", h.unansweredNote())
	}
	v := c.checkDelivered(t, h, sk)
	v.Scenario = "cluster-leader-paused"
	v.Notes = fmt.Sprintf("3 nodes, 2 brokers, R3, load 500/s; %s (leading %s) frozen at %d acked, %s elected after %.1f s, resumed after %.1f s; %d offered; %s; %s; %s",
		leader, schemas.StreamEvents, acked, newLeader, elected.Seconds(), held.Seconds(), offered,
		stallNote(&v, stalls(h, loadStart, loadEnd)), h.retriesNote(), v.dupNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}

// Scenario cluster-broker-kill: three brokers; alerts pass a 100 ms
// alert.pre_notify hook (a real plugin process); the leading broker is
// killed (kill -9) while chains run inside it. Its operations are retried
// by the clients through the others (same keys), another broker takes
// the lead when its lease expires, and every acknowledged alert ran its
// hook and is stored and POSTed.
func TestClusterBrokerKill(t *testing.T) {
	heavy(t)
	start := time.Now()
	c := newCluster(t, 3)
	sk := newSink(t)
	c.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	hooks := newLines()
	c.startPlugin(t, "slow-hook", "hookplugin", []string{"HOOKPLUGIN_POLICY=fail", "HOOKPLUGIN_DELAY=100ms", "HOOKPLUGIN_TIMEOUT=5s"}, hooks.add)
	waitFor(t, "one leader", waitLimit, func() bool { return len(c.leaders()) == 1 })
	lead := c.leaders()[0]

	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan int)
	loadStart := time.Now()
	go func() {
		done <- h.paced(ctx, load{c: c.admin(t), n: 1 << 30, workers: 64, prefix: "ck"}, scaled(300), stop)
	}()
	h.waitAcked(t, "500 alerts acknowledged", 500)
	// Mid-chain: wait until chains are inside the hook, then kill.
	waitFor(t, "chains inside the hook", waitLimit, func() bool { return len(hooks.held()) > 0 })
	inHook := len(hooks.held())
	acked := h.acked.Load()
	pid := c.brokers[lead].p.pid()
	c.brokers[lead].p.kill9(t)
	killed := time.Now()
	var next int
	waitFor(t, "another broker leading", waitLimit, func() bool {
		l := c.leaders()
		if len(l) == 1 && l[0] != lead {
			next = l[0]
			return true
		}
		return false
	})
	takeover := time.Since(killed)
	h.waitAcked(t, "1000 more alerts acknowledged", acked+1000)
	close(stop)
	offered := <-done
	loadEnd := time.Now()
	if ctx.Err() != nil {
		t.Fatalf("the load did not finish: %s", h.unansweredNote())
	}
	v := c.checkDelivered(t, h, sk)
	v.Scenario = "cluster-broker-kill"
	hookCalls := hooks.count("HELD")
	if hookCalls < int(h.acked.Load()) {
		t.Errorf("the hook saw %d calls for %d acknowledged alerts: some passed without their gate", hookCalls, h.acked.Load())
	}
	v.Notes = fmt.Sprintf("3 nodes, 3 brokers, R3, load 300/s through a 100 ms alert.pre_notify gate (policy fail); leading broker %d (pid %d) killed at %d acked with %d chains inside the hook; broker %d leads %.1f s later (lease TTL 5 s); %d offered; hook calls %d; %s; %s; %s",
		lead, pid, acked, inHook, next, takeover.Seconds(), offered, hookCalls,
		stallNote(&v, stalls(h, loadStart, loadEnd)), h.retriesNote(), v.dupNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
}

// settle asks o again with its key until a definite answer comes, as a
// client does after an answer that left the outcome open.
func (h *history) settle(ctx context.Context, c *client.Client, o *op, req schemas.AlertFireRequest) {
	kctx := client.WithIdempotencyKey(ctx, o.Key)
	for attempt := 1; ctx.Err() == nil; attempt++ {
		cctx, cancel := context.WithTimeout(kctx, 5*time.Second)
		resp, err := c.FireAlert(cctx, req)
		cancel()
		h.mu.Lock()
		o.Attempts++
		switch {
		case err == nil:
			o.Answered, o.OK, o.EventID, o.At = true, true, resp.EventID, time.Now()
			h.mu.Unlock()
			h.acked.Add(1)
			return
		case !retryable(err):
			o.Answered, o.Code, o.At = true, errCode(err), time.Now()
			h.mu.Unlock()
			return
		}
		h.retries[errCode(err)]++
		h.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt)*50*time.Millisecond, time.Second)):
		}
	}
}

// waitAcked waits until n alerts are acknowledged, saying what the
// clients were answered meanwhile when they are not.
func (h *history) waitAcked(t *testing.T, what string, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for h.acked.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %d acknowledged; %s", waitLimit, what, h.acked.Load(), h.retriesNote())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// unansweredNote lists the requests still without an answer, with the
// last error each got.
func (h *history) unansweredNote() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for id, o := range h.ops {
		if !o.Answered {
			parts = append(parts, fmt.Sprintf("%s (%d attempts, last: %s)", id, o.Attempts, o.Last))
		}
	}
	sort.Strings(parts)
	if len(parts) > 10 {
		parts = append(parts[:10], fmt.Sprintf("and %d more", len(parts)-10))
	}
	return fmt.Sprintf("%d unanswered: %s", len(parts), strings.Join(parts, "; "))
}
