package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

type eventT = event.Event

// attempts records the deliveries a handler saw, by event id.
type attempts struct {
	mu  sync.Mutex
	n   map[string][]sdk.Delivery
	ctx []bool // whether each call's context had a deadline
}

func (a *attempts) add(ctx context.Context, e event.Event) int {
	d, _ := sdk.DeliveryFromContext(ctx)
	_, hasDeadline := ctx.Deadline()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string][]sdk.Delivery{}
	}
	a.n[e.ID()] = append(a.n[e.ID()], d)
	a.ctx = append(a.ctx, hasDeadline)
	return len(a.n[e.ID()])
}

func (a *attempts) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.n[id])
}

func TestEventOutcomes(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	b.strayTypes = []string{schemas.TypeAlertResolved}
	alert := schemas.Alert{ID: "a1", Severity: schemas.SeverityCritical, Summary: "disk full", Status: schemas.AlertFiring}

	tests := []struct {
		name        string
		maxDeliver  int
		handler     func(n int) error // n = attempt number, from 1
		publish     func(t *testing.T, b *fakeBroker)
		attempts    int    // handler calls expected
		handled     uint64 // Stats().EventsHandled
		unhandled   uint64
		malformed   uint64
		untrusted   uint64
		termination string // expected reason prefix; "" means not terminated
	}{
		{name: "ack", handler: func(int) error { return nil }, attempts: 1, handled: 1},
		{name: "permanent", handler: func(int) error { return sdk.Permanent(errors.New("bad alert")) }, attempts: 1, termination: "permanent_failure: bad alert"},
		{name: "retry then succeed", handler: func(n int) error {
			if n == 1 {
				return errors.New("flaky")
			}
			return nil
		}, attempts: 2, handled: 1},
		{name: "retry after", handler: func(n int) error {
			if n < 3 {
				return sdk.RetryAfter(5*time.Millisecond, errors.New("rate limited"))
			}
			return nil
		}, attempts: 3, handled: 1},
		{name: "panic is retried", handler: func(n int) error {
			if n == 1 {
				panic("oops")
			}
			return nil
		}, attempts: 2, handled: 1},
		{name: "last delivery terminates", maxDeliver: 3, handler: func(int) error { return errors.New("always down") },
			attempts: 3, termination: "retries_exhausted: failed on the last of 3 deliveries: always down"},
		// A core event's data is checked against its type's schema before
		// any handler sees it.
		{name: "data failing its schema", handler: func(int) error { return nil }, publish: func(t *testing.T, b *fakeBroker) {
			b.publish(t, "ev-undecodable-data", schemas.TypeAlertFired, "not an object")
		}, attempts: 0, termination: "invalid_data: data of event ev-undecodable-data (io.plugbus.alert.v1.fired) fails its schema"},
		// The manifest declares fired only; the consumer's filter also lets
		// resolved through (a stray filter): it is dead-lettered, not dropped.
		{name: "no handler", publish: func(t *testing.T, b *fakeBroker) {
			b.publish(t, "ev-no-handler", schemas.TypeAlertResolved, alert)
		}, attempts: 0, unhandled: 1, termination: "unhandled_type: plugin ev7 has no handler for event type io.plugbus.alert.v1.resolved"},
		{name: "malformed", publish: func(t *testing.T, b *fakeBroker) {
			b.publishRaw(t, wire.EventSubject(testPrefix, schemas.TypeAlertFired), []byte("hello"))
		}, attempts: 0, malformed: 1, termination: "malformed_event: not a CloudEvent"},
		// Only the subject is checked by the server: a core event with a
		// plugin's source, or another type than its subject carries, is
		// refused before any handler sees it.
		{name: "core event with a plugin's source", publish: func(t *testing.T, b *fakeBroker) {
			b.publishOn(t, wire.EventSubject(testPrefix, schemas.TypeAlertFired), "ev-forged", schemas.TypeAlertFired, wire.PluginSource("mallory"), alert)
		}, attempts: 0, untrusted: 1, termination: "untrusted_event: untrusted event: event ev-forged claims source /plugbus/plugins/mallory but arrived on " + testPrefix + ".evt.alert.v1.fired, where only the broker publishes"},
		{name: "type its subject does not carry", publish: func(t *testing.T, b *fakeBroker) {
			b.publishOn(t, wire.EventSubject(testPrefix, schemas.TypeAlertFired), "ev-retyped", schemas.TypeAlertResolved, wire.BrokerSource, alert)
		}, attempts: 0, untrusted: 1, termination: "untrusted_event: untrusted event: event ev-retyped claims type io.plugbus.alert.v1.resolved but arrived on"},
		{name: "empty object data", handler: func(int) error { return nil }, publish: func(t *testing.T, b *fakeBroker) {
			b.publish(t, "ev-empty-object", schemas.TypeAlertFired, map[string]any{})
		}, attempts: 0, termination: "invalid_data: data of event ev-empty-object"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("ev%d", i)
			m := schemas.Manifest{Name: name, Version: "1.0.0", Events: &schemas.EventSubscription{
				Types:      []string{schemas.TypeAlertFired},
				MaxDeliver: tt.maxDeliver,
				Backoff:    []schemas.Duration{schemas.Duration(time.Millisecond), schemas.Duration(5 * time.Millisecond)},
			}}
			p := newPlugin(t, m)
			var a attempts
			handler := tt.handler
			if handler == nil {
				handler = func(int) error { return nil }
			}
			{
				p.HandleEvent(schemas.TypeAlertFired, func(ctx context.Context, e event.Event) error {
					n := a.add(ctx, e)
					if strings.Contains(e.ID(), "undecodable") {
						_, err := sdk.DecodeData[schemas.Alert](e)
						return err
					}
					return handler(n)
				})
			}
			terms := b.watchTerminations(t, schemas.ConsumerName(name))
			// Another plugin on the same stream keeps each test's consumer
			// isolated by name only; clear the stream per test instead.
			if err := b.purge(); err != nil {
				t.Fatal(err)
			}
			runPlugin(t, s.ClientURL(), p)
			id := "ev-" + name
			if tt.publish != nil {
				tt.publish(t, b)
			} else {
				b.publish(t, id, schemas.TypeAlertFired, alert)
			}
			waitFor(t, "the outcome", func() bool {
				st := p.Stats()
				done := st.EventsHandled+st.EventsTerminated > 0
				return done && (tt.termination == "" || len(terms.list()) > 0)
			})
			st := p.Stats()
			if st.EventsHandled != tt.handled || st.EventsUnhandled != tt.unhandled || st.EventsMalformed != tt.malformed || st.EventsUntrusted != tt.untrusted {
				t.Errorf("stats = %+v, want handled %d unhandled %d malformed %d untrusted %d", st, tt.handled, tt.unhandled, tt.malformed, tt.untrusted)
			}
			a.mu.Lock()
			calls := 0
			for _, ds := range a.n {
				calls += len(ds)
				for j, d := range ds {
					if d.NumDelivered != uint64(j+1) {
						t.Errorf("attempt %d saw NumDelivered %d", j+1, d.NumDelivered)
					}
				}
			}
			for _, ok := range a.ctx {
				if !ok {
					t.Error("handler context has no deadline")
				}
			}
			a.mu.Unlock()
			if calls != tt.attempts {
				t.Errorf("handler calls = %d, want %d", calls, tt.attempts)
			}
			reasons := terms.list()
			switch {
			case tt.termination == "" && len(reasons) > 0:
				t.Errorf("terminated with %q, want acknowledged", reasons)
			case tt.termination != "" && (len(reasons) != 1 || !strings.HasPrefix(reasons[0], tt.termination)):
				t.Errorf("termination reasons = %q, want one starting with %q", reasons, tt.termination)
			}
			if tt.termination != "" && st.EventsTerminated != 1 {
				t.Errorf("EventsTerminated = %d, want 1", st.EventsTerminated)
			}
		})
	}
}

// Events published while the plugin is in ERROR wait in its consumer and
// are handled once it becomes ACTIVE.
func TestEventsWaitForActive(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	p := newPlugin(t, schemas.Manifest{Name: "waiter", Version: "1.0.0", RequiredParams: []string{"url"},
		Events: &schemas.EventSubscription{Types: []string{"io.plugbus.job.v1.*"}}})
	var a attempts
	p.HandleEvent("io.plugbus.job.v1.*", func(ctx context.Context, e event.Event) error {
		if p.Config().String("url", "") == "" {
			return sdk.Permanent(errors.New("handled without config"))
		}
		a.add(ctx, e)
		return nil
	})
	runPlugin(t, s.ClientURL(), p)
	if p.State() != schemas.StateError {
		t.Fatalf("state = %s, want ERROR", p.State())
	}
	b.publish(t, "job-1", schemas.TypeJobDeployed, schemas.JobDeployedData{Name: "j", Version: "1", Image: "i"})
	b.setConfig(t, "waiter", map[string]any{"url": "http://x"})
	waitFor(t, "the event", func() bool { return a.count("job-1") == 1 && p.Stats().EventsHandled == 1 })
	if st := p.Stats(); st.EventsTerminated != 0 || st.EventsHandled != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// Instances share the durable consumer: each event is handled once.
func TestInstancesShareConsumer(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	m := schemas.Manifest{Name: "shared", Version: "1.0.0", Events: &schemas.EventSubscription{Types: []string{schemas.TypeJobDeployed}}}
	var a attempts
	var ps []*sdk.Plugin
	for range 2 {
		p := newPlugin(t, m)
		p.HandleEvent(schemas.TypeJobDeployed, func(ctx context.Context, e event.Event) error { a.add(ctx, e); return nil })
		runPlugin(t, s.ClientURL(), p)
		ps = append(ps, p)
	}
	const n = 20
	for i := range n {
		b.publish(t, fmt.Sprintf("job-%d", i), schemas.TypeJobDeployed, schemas.JobDeployedData{Name: "j", Version: fmt.Sprint(i), Image: "i"})
	}
	waitFor(t, "every event", func() bool { return ps[0].Stats().EventsHandled+ps[1].Stats().EventsHandled == n })
	for i := range n {
		if c := a.count(fmt.Sprintf("job-%d", i)); c != 1 {
			t.Errorf("job-%d handled %d times", i, c)
		}
	}
}

// A plugin's own events: Emit stores them in the event stream with the
// plugin's type and source, another plugin consumes them by type, and an
// event on that subject with any other source never reaches its handler.
func TestEmit(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	if err := b.purge(); err != nil {
		t.Fatal(err)
	}
	typ := wire.PluginEventType("emitter", "counter.v1.changed")
	emitter := newPlugin(t, schemas.Manifest{Name: "emitter", Version: "1.0.0"})
	if _, err := emitter.Emit(context.Background(), "counter.v1.changed", map[string]int{"count": 1}); !errors.Is(err, client.ErrNotConnected) {
		t.Errorf("Emit before Run = %v, want ErrNotConnected", err)
	}
	listener := newPlugin(t, schemas.Manifest{Name: "listener", Version: "1.0.0", Events: &schemas.EventSubscription{Types: []string{typ}}})
	var (
		mu  sync.Mutex
		got []event.Event
	)
	listener.HandleEvent(typ, func(_ context.Context, e event.Event) error {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		return nil
	})
	terms := b.watchTerminations(t, schemas.ConsumerName("listener"))
	runPlugin(t, s.ClientURL(), emitter)
	runPlugin(t, s.ClientURL(), listener)

	id, err := emitter.Emit(context.Background(), "counter.v1.changed", map[string]int{"count": 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emitter.Emit(context.Background(), "counter.>", nil); err == nil || !strings.Contains(err.Error(), "an event name is dot-separated") {
		t.Errorf("Emit with a wildcard name = %v", err)
	}
	subject := wire.PluginEventSubject(testPrefix, "emitter") + ".counter.v1.changed"
	b.publishOn(t, subject, "forged-source", typ, wire.PluginSource("mallory"), map[string]int{"count": 99})
	b.publishOn(t, subject, "forged-type", schemas.TypeAlertFired, wire.PluginSource("emitter"), map[string]int{"count": 98})

	waitFor(t, "the emitted event and both forgeries", func() bool {
		st := listener.Stats()
		return st.EventsHandled == 1 && st.EventsUntrusted == 2 && len(terms.list()) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].ID() != id || got[0].Source() != "/plugbus/plugins/emitter" || got[0].Type() != "io.plugbus.plugin.emitter.counter.v1.changed" {
		t.Fatalf("handled %v, want only the emitted event %s", got, id)
	}
	if d, err := sdk.DecodeData[map[string]int](got[0]); err != nil || d["count"] != 1 {
		t.Errorf("data = %v (%v)", d, err)
	}
	for _, r := range terms.list() {
		if !strings.HasPrefix(r, schemas.ReasonUntrusted+": ") {
			t.Errorf("termination %q, want untrusted_event", r)
		}
	}
}
