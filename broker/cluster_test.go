package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// TestTwoBrokersOnR3Cluster runs two brokers against a three-node cluster
// with R3 streams and buckets: each API request is answered once, a plugin
// registered through one broker is routed by the other, and the events are
// replicated on three servers.
func TestTwoBrokersOnR3Cluster(t *testing.T) {
	c := testnats.StartCluster(t, 3)
	urls := c.URLs()
	b1 := startBroker(t, Config{NATSURL: urls[0], Replicas: 3})
	b2 := startBroker(t, Config{NATSURL: urls[2], Replicas: 3})
	ctx := context.Background()

	stream, err := b1.js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("event stream replicas %d, want 3", r)
	}

	p := newFakePlugin(t, urls[1], actionManifest("inc", schemas.ActionSpec{Command: "increment", Model: "machines"}))
	p.result = 1
	p.start("plugbus")
	if st := p.register(t, b1, nil).Plugin.State; st != schemas.StateActive {
		t.Fatalf("state %s", st)
	}
	// Each broker answers API calls; both route to the plugin. The API is one
	// queue group, so 20 calls reach the plugin exactly 20 times.
	for i := 0; i < 10; i++ {
		for _, tb := range []*testBus{b1, b2} {
			waitFor(t, "plugin routable on every broker", func() bool {
				return tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m", Command: "increment"}, nil) == nil
			})
		}
	}
	if n := len(p.lastActions()); n != 20 {
		t.Fatalf("plugin called %d times for 20 actions", n)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("event stream not replicated: %+v", info.Cluster)
	}
	if info.State.Msgs < 40 {
		t.Fatalf("stream holds %d events, want requested+completed for each of 20 actions", info.State.Msgs)
	}
	locks, err := b1.js.KeyValue(ctx, schemas.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := locks.Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("locks bucket not R3: %v %v", st, err)
	}
}

// objectLog records, for one object, the steps of every operation on it as
// the plugins see them: "hook>", "<hook", "act>", "<act" with the
// operation's client and sequence number.
type objectLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *objectLog) add(step string, params map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf("%s %v/%v", step, params["client"], params["seq"]))
}

func (l *objectLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.entries...)
}

// checkSerial checks that the operations in log never overlap (each is
// hook>, <hook, act>, <act of one operation, then the next one's) and that
// each client's operations ran in the order it sent them.
func checkSerial(t *testing.T, log []string, want int) {
	t.Helper()
	if len(log) != 4*want {
		t.Fatalf("%d steps recorded, want 4 for each of %d operations", len(log), want)
	}
	last := map[string]int{}
	for i := 0; i < len(log); i += 4 {
		op := strings.Fields(log[i])[1]
		for k, step := range []string{"hook>", "<hook", "act>", "<act"} {
			if log[i+k] != step+" "+op {
				t.Fatalf("operations overlap at step %d: %q where %q was due (%v)", i+k, log[i+k], step+" "+op, log[max(0, i-4):min(len(log), i+8)])
			}
		}
		client, seq, _ := strings.Cut(op, "/")
		var n int
		fmt.Sscan(seq, &n)
		if prev, ok := last[client]; ok && n <= prev {
			t.Fatalf("client %s: operation %d ran after %d (not in the order it sent them)", client, n, prev)
		}
		last[client] = n
	}
}

// apiCount is a broker's count of successful requests to an endpoint.
func apiCount(t *testing.T, tb *testBus, endpoint string) float64 {
	t.Helper()
	mfs, err := tb.b.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "plugbus_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labels(m)["endpoint"] == endpoint && labels(m)["code"] == "ok" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestThreeBrokersOnOneBus runs three brokers on a three-node cluster with
// R3 streams and buckets, each connected to its own node.
//
//   - Many clients hammer one machine through all three brokers: the
//     operations never overlap (the hook's and the action's enter and
//     exit of one operation come before the next operation's) and each
//     client's run in the order it sent them; every broker served some.
//   - Another machine is not held up by the first.
//   - One broker leads; stopping it hands the lead over at once, and a
//     broker that dies (its NATS connection cut, no goodbye) hands it
//     over when its lease expires. A plugin that stops is marked STALE
//     once, by the leader, not by every broker.
func TestThreeBrokersOnOneBus(t *testing.T) {
	c := testnats.StartCluster(t, 3)
	urls := c.URLs()
	var brokers []*testBus
	for i := range 3 {
		brokers = append(brokers, startBroker(t, Config{NATSURL: urls[i], Replicas: 3, LeaseTTL: 2 * time.Second,
			HeartbeatInterval: 250 * time.Millisecond}))
	}
	b0 := brokers[0]

	var m1 objectLog
	hold := make(chan struct{})
	entered := make(chan string, 1)
	pre := schemas.HookMachinePreAction
	gate := newFakePlugin(t, urls[1], manifest("gate", "1.0.0"))
	gate.manifest.Hooks = []schemas.HookSpec{{Hook: pre, Timeout: schemas.Duration(30 * time.Second)}}
	gate.onHook(pre, func(r schemas.HookRequest) (schemas.HookResponse, error) {
		var req schemas.MachineActionRequest
		_ = json.Unmarshal(r.Payload, &req)
		if req.Machine == "m1" {
			m1.add("hook>", req.Params)
			if req.Params["client"] == "holder" {
				entered <- "m1"
				<-hold
			}
			// Some work, so a second operation would have time to overlap.
			time.Sleep(time.Millisecond)
			m1.add("<hook", req.Params)
		}
		return schemas.HookResponse{Outcome: schemas.HookContinue}, nil
	})
	gate.start("plugbus")
	gate.register(t, b0, nil)
	act := newFakePlugin(t, urls[2], actionManifest("act", schemas.ActionSpec{Command: "touch", Model: "machines"}))
	act.result = "ok"
	act.onAction = func(phase string, req schemas.ActionRequest) {
		if req.Object != "m1" {
			return
		}
		if phase == "enter" {
			m1.add("act>", req.Params)
			time.Sleep(time.Millisecond)
		} else {
			m1.add("<act", req.Params)
		}
	}
	act.start("plugbus")
	act.register(t, b0, nil)
	for _, tb := range brokers {
		waitFor(t, "gate and act ACTIVE on every broker", func() bool {
			return tb.b.reg.state("gate") == schemas.StateActive && tb.b.reg.state("act") == schemas.StateActive
		})
	}

	t.Run("one object serialised across brokers", func(t *testing.T) {
		const clients, each = 9, 10
		var wg sync.WaitGroup
		for cl := range clients {
			nc, err := nats.Connect(urls[cl%3])
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			wg.Go(func() {
				for seq := range each {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := wire.Call(ctx, nc, wire.APISubject("plugbus", schemas.APIMachinesAction), schemas.MachineActionRequest{
						Machine: "m1", Command: "touch", Params: map[string]any{"client": fmt.Sprint(cl), "seq": seq}}, nil)
					cancel()
					if err != nil {
						t.Errorf("client %d op %d: %v", cl, seq, err)
						return
					}
				}
			})
		}
		wg.Wait()
		checkSerial(t, m1.snapshot(), clients*each)
		for i, tb := range brokers {
			if n := apiCount(t, tb, schemas.APIMachinesAction); n == 0 {
				t.Errorf("broker %d served no action: the test did not spread the operations", i)
			}
		}
	})

	t.Run("other objects run meanwhile", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			done <- b0.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "touch",
				Params: map[string]any{"client": "holder", "seq": 0}}, nil)
		}()
		<-entered
		// m1 is held inside its hook; m2 goes through every broker.
		for i, tb := range brokers {
			if err := tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m2", Command: "touch"}, nil); err != nil {
				t.Errorf("m2 through broker %d while m1 is held: %v", i, err)
			}
		}
		close(hold)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	leaders := func() []int {
		var out []int
		for i, tb := range brokers {
			if tb.cancel != nil && tb.b.Leading() {
				out = append(out, i)
			}
		}
		return out
	}
	t.Run("leadership passes on", func(t *testing.T) {
		waitFor(t, "one leader", func() bool { return len(leaders()) == 1 })
		first := leaders()[0]
		brokers[first].stop()
		waitFor(t, "a new leader after a graceful stop", func() bool { return len(leaders()) == 1 })
		second := leaders()[0]
		// A crash: the connection goes, the lease is never released.
		brokers[second].b.nc.Close()
		waitFor(t, "a new leader after a crash", func() bool {
			l := leaders()
			return len(l) == 1 && l[0] != second || len(l) == 2
		})
		brokers[second].stop()
		waitFor(t, "one leader", func() bool { return len(leaders()) == 1 })
	})

	t.Run("a stopped plugin goes STALE once", func(t *testing.T) {
		var lead *testBus
		waitFor(t, "a leader", func() bool { return len(leaders()) == 1 })
		lead = brokers[leaders()[0]]
		act.stopService()
		waitFor(t, "act STALE", func() bool { return lead.b.reg.state("act") == schemas.StateStale })
		// Every broker that ran heartbeats would mark it; only the leader
		// does. Let the leader check every plugin a few more times, then
		// count.
		r0 := lead.b.reg.rounds.Load()
		waitFor(t, "4 more heartbeat rounds", func() bool { return lead.b.reg.rounds.Load() >= r0+4 })
		ctx := context.Background()
		cons, err := lead.js.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{wire.EventSubject("plugbus", schemas.TypePluginStateChanged)}})
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stale := 0
		for range info.NumPending {
			// On a cluster the ordered consumer may not serve pulls on
			// every node at once: a pull can find no responders at first.
			msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			for try := 0; errors.Is(err, nats.ErrNoResponders) && try < 50; try++ {
				time.Sleep(100 * time.Millisecond)
				msg, err = cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			}
			if err != nil {
				t.Fatal(err)
			}
			var data schemas.PluginStateChangedData
			_ = json.Unmarshal(msg.Data(), &data)
			if data.Name == "act" && data.To == schemas.StateStale {
				stale++
			}
		}
		if stale != 1 {
			t.Fatalf("%d state_changed events to STALE for one stopped plugin, want 1", stale)
		}
		for i, tb := range brokers {
			if tb.cancel != nil && tb != lead && tb.b.reg.rounds.Load() != 0 && !tb.b.Leading() {
				// A follower may have led before (the failover above); it
				// must not be checking now.
				r := tb.b.reg.rounds.Load()
				waitFor(t, "4 more leader rounds", func() bool { return lead.b.reg.rounds.Load() >= r0+8 })
				if tb.b.reg.rounds.Load() != r {
					t.Errorf("follower %d ran heartbeat rounds while another broker led", i)
				}
			}
		}
	})
}

// A broker that lost its lease while the cluster has no quorum, and could
// not take a new one, refuses operations at once as unavailable, saying
// nothing was done and why — it does not keep each caller for a lease
// TTL (or its own deadline) on a bus that takes no writes.
func TestNoLeaseRefusedAtOnce(t *testing.T) {
	c := testnats.StartCluster(t, 3)
	tb := startBroker(t, Config{NATSURL: c.URLs()[0], Replicas: 3, LeaseTTL: 2 * time.Second})
	fire := func(id string) error {
		return tb.call(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityWarning, Summary: "quorum"}, nil)
	}
	if err := fire("before"); err != nil {
		t.Fatal(err)
	}
	c.Stop(1)
	c.Stop(2)
	// The lease ends (as when its key expired while renewals failed); the
	// next try to take one fails on the leaderless locks bucket.
	id, _, ok := tb.b.lease.current()
	if !ok {
		t.Fatal("no lease before the outage")
	}
	tb.b.lease.ended(id, "the test ended it")
	waitFor(t, "a failed try to take a lease", func() bool {
		tb.b.lease.mu.Lock()
		defer tb.b.lease.mu.Unlock()
		return tb.b.lease.takeErr != nil
	})
	e := wantCode(t, fire("during"), schemas.CodeUnavailable, "")
	if !strings.Contains(e.Message, "no lease on the bus: taking one failed") || !strings.Contains(e.Message, "nothing was done") {
		t.Fatalf("message %q does not say the broker has no lease, why, and that nothing was done", e.Message)
	}
	if e.Details[schemas.DetailCommitted] != false {
		t.Fatalf("details %v: want committed false", e.Details)
	}
	c.Restart(1)
	waitFor(t, "a lease again and the alert taken", func() bool { return fire("after") == nil })
}
