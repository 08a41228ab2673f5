package plugintest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// delivered is one event a recorder handled.
type delivered struct {
	id, typ string
	// replay is ReplayOf(event); ctxReplay the Delivery's Replay.
	replay, ctxReplay string
	seq               uint64
}

// recorder is a plugin that records every event it handles.
type recorder struct {
	p  *sdk.Plugin
	mu sync.Mutex
	// got is what it handled, in order.
	got []delivered
	// gate, when set, decides what a handler returns (nil: handled).
	gate func(d delivered) error
}

func newRecorder(t *testing.T, bus *plugintest.Bus, name, start string, types ...string) *recorder {
	t.Helper()
	p, err := sdk.New(schemas.Manifest{Name: name, Version: "1.0.0",
		Events: &schemas.EventSubscription{Types: types, Start: start, MaxDeliver: 10000,
			Backoff: []schemas.Duration{schemas.Duration(5 * time.Millisecond)}}},
		sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{p: p}
	for _, typ := range types {
		p.HandleEvent(typ, func(ctx context.Context, e event.Event) error {
			dv, _ := sdk.DeliveryFromContext(ctx)
			d := delivered{id: e.ID(), typ: e.Type(), replay: sdk.ReplayOf(e), ctxReplay: dv.Replay, seq: dv.StreamSeq}
			r.mu.Lock()
			gate := r.gate
			r.mu.Unlock()
			if gate != nil {
				if err := gate(d); err != nil {
					return err
				}
			}
			r.mu.Lock()
			r.got = append(r.got, d)
			r.mu.Unlock()
			return nil
		})
	}
	return r
}

func (r *recorder) setGate(g func(delivered) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gate = g
}

// deliveries returns what the recorder handled so far.
func (r *recorder) deliveries() []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// ids returns the ids handled, replayed (replay true) or not.
func (r *recorder) ids(replayed bool) []string {
	var out []string
	for _, d := range r.deliveries() {
		if (d.replay != "") == replayed {
			out = append(out, d.id)
		}
	}
	return out
}

func (r *recorder) has(id string) bool {
	return slices.ContainsFunc(r.deliveries(), func(d delivered) bool { return d.id == id })
}

func fireAlert(t *testing.T, bus *plugintest.Bus, id string) string {
	t.Helper()
	var resp schemas.AlertResponse
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityWarning, Summary: "replay test " + id}, &resp)
	return resp.EventID
}

func deployJob(t *testing.T, bus *plugintest.Bus, name string) string {
	t.Helper()
	var resp schemas.JobResponse
	bus.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: name, Version: "1.0.0", Image: "nginx:1.27"}, &resp)
	return resp.EventID
}

// waitReplayDone follows a replay's status until it is done and returns
// the last status.
func waitReplayDone(t *testing.T, bus *plugintest.Bus, name string) schemas.ReplayStatus {
	t.Helper()
	var st schemas.ReplayStatus
	bus.WaitFor(t, func() bool {
		if err := bus.Call(schemas.APIPluginsReplayStatus, schemas.PluginGetRequest{Name: name}, &st); err != nil {
			t.Fatalf("replay status: %v", err)
		}
		return st.Done
	})
	return st
}

// A replay from a sequence, of one type, redelivers exactly the past
// events of that type, once, with their ids and the replay's mark, to
// that plugin only, while new events keep reaching it (and the other
// plugin) once, through the durable; with identities on, so the plugin's
// own permissions suffice to pull from its replay consumer.
func TestReplayFromSeqOneType(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithAuth())
	rep := newRecorder(t, bus, "replayer", "", schemas.TypeAlertFired, schemas.TypeJobDeployed)
	other := newRecorder(t, bus, "bystander", "", schemas.TypeAlertFired)
	bus.StartPlugin(t, rep.p)
	bus.StartPlugin(t, other.p)

	var alerts, jobs []string
	for i := range 5 {
		alerts = append(alerts, fireAlert(t, bus, fmt.Sprintf("a%d", i)))
		jobs = append(jobs, deployJob(t, bus, fmt.Sprintf("j%d", i)))
	}
	bus.WaitFor(t, func() bool { return len(rep.deliveries()) == 10 && len(other.deliveries()) == 5 })
	first := rep.deliveries()[0].seq

	// No replayed event is handled before a new one was: the replay must
	// let new events through, or it never finishes.
	newSeen := make(chan struct{})
	rep.setGate(func(d delivered) error {
		if d.replay == "" {
			return nil
		}
		select {
		case <-newSeen:
			return nil
		default:
			return sdk.RetryAfter(5*time.Millisecond, errors.New("waiting for the new event"))
		}
	})

	var st schemas.ReplayStatus
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "replayer", FromSeq: first,
		Types: []string{schemas.TypeAlertFired}}, &st)
	if st.Total != 5 || st.Done || st.ID == "" || st.Consumer != schemas.ReplayConsumerName("replayer") ||
		!slices.Equal(st.Types, []string{schemas.TypeAlertFired}) || st.FromSeq != first {
		t.Fatalf("replay started = %+v, want 5 alerts from %d", st, first)
	}
	// A second replay while this one runs is refused.
	err := bus.Call(schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "replayer", FromSeq: 1}, nil)
	if !errors.Is(err, schemas.ErrConflict) {
		t.Errorf("second replay: %v, want conflict", err)
	}
	id := fireAlert(t, bus, "during")
	bus.WaitFor(t, func() bool { return rep.has(id) })
	if len(rep.ids(true)) != 0 {
		t.Fatalf("replayed events handled before the new one: %v", rep.ids(true))
	}
	close(newSeen)

	done := waitReplayDone(t, bus, "replayer")
	if done.Replayed != 5 || done.Remaining != 0 || done.ID != st.ID {
		t.Errorf("replay done = %+v", done)
	}
	// Nothing more comes from the replay: after a last new event, the
	// replayed ones are exactly the past alerts, once each. In any order:
	// the gate had each of them retried, and a retried event comes again
	// after its backoff, after later ones (docs/replay.md; the order
	// without retries is checked by the tests below).
	last := fireAlert(t, bus, "last")
	bus.WaitFor(t, func() bool { return rep.has(last) && other.has(last) })
	if got := rep.ids(true); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(alerts))) {
		t.Errorf("replayed %v, want the alerts %v, once each", got, alerts)
	}
	for _, d := range rep.deliveries() {
		if d.replay != d.ctxReplay || d.replay != "" && d.replay != st.ID {
			t.Errorf("delivery %+v: replay marks disagree (replay %s)", d, st.ID)
		}
	}
	wantNew := append(append(interleave(alerts, jobs), id), last)
	if got := rep.ids(false); !slices.Equal(got, wantNew) {
		t.Errorf("first deliveries %v, want %v", got, wantNew)
	}
	if got, want := other.ids(false), append(append(slices.Clone(alerts), id), last); !slices.Equal(got, want) || len(other.ids(true)) != 0 {
		t.Errorf("bystander got %v (replayed %v), want %v and nothing replayed", got, other.ids(true), want)
	}
	// The replay is gone once done.
	if err := bus.Call(schemas.APIPluginsReplayStatus, schemas.PluginGetRequest{Name: "replayer"}, nil); !errors.Is(err, schemas.ErrNotFound) {
		t.Errorf("status after done: %v, want not_found", err)
	}
}

func interleave(a, b []string) []string {
	var out []string
	for i := range a {
		out = append(out, a[i], b[i])
	}
	return out
}

// A replay from a time redelivers the events stored from then on, of
// every type the plugin consumes; one from before anything was stored
// redelivers all.
func TestReplayFromTime(t *testing.T) {
	bus := plugintest.Start(t)
	rep := newRecorder(t, bus, "replayer", "", schemas.TypeAlertFired, schemas.TypeJobDeployed)
	bus.StartPlugin(t, rep.p)
	before := []string{fireAlert(t, bus, "old"), deployJob(t, bus, "old")}
	bus.WaitFor(t, func() bool { return len(rep.deliveries()) == 2 })
	after := []string{deployJob(t, bus, "new"), fireAlert(t, bus, "new")}
	bus.WaitFor(t, func() bool { return len(rep.deliveries()) == 4 })
	from := storedAt(t, bus, rep.deliveries()[2].seq)

	var st schemas.ReplayStatus
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "replayer", FromTime: &from}, &st)
	if st.Total != 2 || st.FromTime == nil || !st.FromTime.Equal(from) {
		t.Fatalf("replay = %+v, want 2 events from %s", st, from)
	}
	waitReplayDone(t, bus, "replayer")
	bus.WaitFor(t, func() bool { return len(rep.ids(true)) == 2 })
	if got := rep.ids(true); !slices.Equal(got, after) {
		t.Errorf("replayed %v, want %v", got, after)
	}

	early := time.Now().Add(-time.Hour)
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "replayer", FromTime: &early}, &st)
	if st.Total != 4 {
		t.Fatalf("replay from an hour ago = %+v, want all 4", st)
	}
	waitReplayDone(t, bus, "replayer")
	bus.WaitFor(t, func() bool { return len(rep.ids(true)) == 6 })
	if got := rep.ids(true)[2:]; !slices.Equal(got, append(before, after...)) {
		t.Errorf("replayed %v, want %v", got, append(before, after...))
	}
}

// storedAt returns when the event stream stored a sequence.
func storedAt(t *testing.T, bus *plugintest.Bus, seq uint64) time.Time {
	t.Helper()
	s, err := bus.JetStream().Stream(context.Background(), schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m.Time
}

// OnceByEventID runs a handler again for a replayed event (once per
// replay), while Once with the bare event id keeps it from repeating.
func TestReplayAndOnce(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(schemas.Manifest{Name: "once", Version: "1.0.0",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}}}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	perReplay, never := map[string]int{}, map[string]int{}
	p.HandleEvent(schemas.TypeAlertFired, p.OnceByEventID(func(ctx context.Context, e event.Event) error {
		mu.Lock()
		perReplay[e.ID()]++
		mu.Unlock()
		return p.Once(ctx, "never-again/"+e.ID(), func(context.Context) error {
			mu.Lock()
			never[e.ID()]++
			mu.Unlock()
			return nil
		})
	}))
	bus.StartPlugin(t, p)
	id := fireAlert(t, bus, "x")
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return perReplay[id], never[id]
	}
	bus.WaitFor(t, func() bool { a, _ := counts(); return a == 1 })
	for n := 2; n <= 3; n++ {
		bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "once", FromSeq: 1}, nil)
		waitReplayDone(t, bus, "once")
		bus.WaitFor(t, func() bool { a, _ := counts(); return a == n })
	}
	if a, b := counts(); a != 3 || b != 1 {
		t.Errorf("handler ran %d times (want 3: once, then once per replay), the never-again side effect %d (want 1)", a, b)
	}
}

// Bad replay requests get an error naming the field, and change nothing.
func TestReplayBadInput(t *testing.T) {
	bus := plugintest.Start(t)
	rep := newRecorder(t, bus, "replayer", "", schemas.TypeAlertFired)
	bus.StartPlugin(t, rep.p)
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name  string
		req   schemas.PluginReplayRequest
		code  string
		field string
	}{
		{"unknown plugin", schemas.PluginReplayRequest{Name: "nobody", FromSeq: 1}, schemas.CodeNotFound, "name"},
		{"no start", schemas.PluginReplayRequest{Name: "replayer"}, schemas.CodeInvalidField, "from_seq"},
		{"both starts", schemas.PluginReplayRequest{Name: "replayer", FromSeq: 1, FromTime: &future}, schemas.CodeInvalidField, "from_time"},
		{"future time", schemas.PluginReplayRequest{Name: "replayer", FromTime: &future}, schemas.CodeInvalidField, "from_time"},
		{"type not consumed", schemas.PluginReplayRequest{Name: "replayer", FromSeq: 1, Types: []string{schemas.TypeJobDeployed}}, schemas.CodeInvalidField, "types[0]"},
		{"not a type", schemas.PluginReplayRequest{Name: "replayer", FromSeq: 1, Types: []string{"no spaces please"}}, schemas.CodeInvalidField, "types[0]"},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			err := bus.Call(schemas.APIPluginsReplay, c.req, nil)
			var e *schemas.Error
			if !errors.As(err, &e) || e.Code != c.code || e.Field != c.field {
				t.Fatalf("got %v, want %s on %s", err, c.code, c.field)
			}
		})
	}
	// A plugin that consumes no events has nothing to replay.
	quiet, err := sdk.New(schemas.Manifest{Name: "quiet", Version: "1.0.0"}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	bus.StartPlugin(t, quiet)
	if err := bus.Call(schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "quiet", FromSeq: 1}, nil); !errors.Is(err, schemas.ErrInvalidField) {
		t.Errorf("replay of a plugin without events: %v, want invalid_field", err)
	}
	// Nothing to replay yet: done at once, no consumer left.
	var st schemas.ReplayStatus
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "replayer", FromSeq: 1}, &st)
	if !st.Done || st.Total != 0 || st.Consumer != "" {
		t.Errorf("replay of nothing = %+v, want done with 0", st)
	}
	// A stopped plugin cannot take a replay.
	in := bus.StartPlugin(t, newRecorder(t, bus, "gone", "", schemas.TypeAlertFired).p)
	fireAlert(t, bus, "for-gone")
	_ = in.Stop()
	bus.WaitFor(t, func() bool { return bus.Plugin(t, "gone").State == schemas.StateStale })
	if err := bus.Call(schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "gone", FromSeq: 1}, nil); !errors.Is(err, schemas.ErrNotActive) {
		t.Errorf("replay of a stopped plugin: %v, want not_active", err)
	}
	// The alert for gone reached replayer too (it consumes alerts), once.
	bus.WaitFor(t, func() bool { return len(rep.deliveries()) == 1 })
	if len(rep.ids(true)) != 0 {
		t.Errorf("replayer got %+v", rep.deliveries())
	}
}

// A plugin that started with new events only can be given older ones by a
// replay: its durable's place is where it was created.
func TestReplayBackfillsANewPlugin(t *testing.T) {
	bus := plugintest.Start(t)
	before := []string{fireAlert(t, bus, "before1"), fireAlert(t, bus, "before2")}
	r := newRecorder(t, bus, "late", schemas.StartNew, schemas.TypeAlertFired)
	bus.StartPlugin(t, r.p)
	var st schemas.ReplayStatus
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "late", FromSeq: 1}, &st)
	if st.Total != 2 {
		t.Fatalf("replay = %+v, want the 2 alerts from before the plugin", st)
	}
	waitReplayDone(t, bus, "late")
	after := fireAlert(t, bus, "after")
	bus.WaitFor(t, func() bool { return r.has(after) })
	if got := r.ids(true); !slices.Equal(got, before) {
		t.Errorf("replayed %v, want %v", got, before)
	}
	if got := r.ids(false); !slices.Equal(got, []string{after}) {
		t.Errorf("first deliveries %v, want only %s", got, after)
	}
}

// A replay goes on across a restart of the plugin: the new instance finds
// the replay consumer when it starts.
func TestReplaySurvivesARestart(t *testing.T) {
	bus := plugintest.Start(t)
	first := newRecorder(t, bus, "restarted", "", schemas.TypeAlertFired)
	first.setGate(func(d delivered) error {
		if d.replay != "" {
			return sdk.RetryAfter(5*time.Millisecond, errors.New("not now"))
		}
		return nil
	})
	in := bus.StartPlugin(t, first.p)
	alerts := []string{fireAlert(t, bus, "r1"), fireAlert(t, bus, "r2"), fireAlert(t, bus, "r3")}
	bus.WaitFor(t, func() bool { return len(first.deliveries()) == 3 })
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "restarted", FromSeq: 1}, nil)
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	second := newRecorder(t, bus, "restarted", "", schemas.TypeAlertFired)
	bus.StartPlugin(t, second.p)
	st := waitReplayDone(t, bus, "restarted")
	if st.Replayed != 3 {
		t.Errorf("replay = %+v", st)
	}
	bus.WaitFor(t, func() bool { return len(second.ids(true)) == 3 })
	// Redeliveries (the first instance's retries) need not keep stream order.
	got := second.ids(true)
	slices.Sort(got)
	slices.Sort(alerts)
	if !slices.Equal(got, alerts) || len(first.ids(true)) != 0 {
		t.Errorf("the restarted instance replayed %v (the first %v), want %v", got, first.ids(true), alerts)
	}
}
