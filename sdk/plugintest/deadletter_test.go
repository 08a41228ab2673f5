package plugintest_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// failing is a plugin whose event handler always fails, each attempt
// with its own error.
func failing(t *testing.T, bus *plugintest.Bus, m schemas.Manifest, handler func(ctx context.Context, n int64) error) (*sdk.Plugin, *atomic.Int64) {
	t.Helper()
	p, err := sdk.New(m, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	p.HandleEvent(schemas.TypeAlertFired, func(ctx context.Context, _ event.Event) error {
		return handler(ctx, calls.Add(1))
	})
	return p, &calls
}

func failingManifest(ackWait time.Duration) schemas.Manifest {
	return schemas.Manifest{
		Name: "failing", Version: "1.0.0", Description: "fails every event",
		Events: &schemas.EventSubscription{
			Types:      []string{schemas.TypeAlertFired},
			MaxDeliver: 3,
			AckWait:    schemas.Duration(ackWait),
			Backoff:    []schemas.Duration{schemas.Duration(time.Millisecond)},
		},
	}
}

// waitDeadLetters waits until the plugin's consumer has nothing left to
// deliver or in flight, the broker's dead-letter path has taken every
// advisory (it acknowledges one once its dead letter is stored) and there
// is a dead letter: then no further delivery and no other dead letter can
// come.
func waitDeadLetters(t *testing.T, bus *plugintest.Bus, plugin string) []plugintest.DeadLetter {
	t.Helper()
	cons, err := bus.JetStream().Consumer(context.Background(), schemas.StreamEvents, schemas.ConsumerName(plugin))
	if err != nil {
		t.Fatal(err)
	}
	bus.WaitFor(t, func() bool {
		info, err := cons.Info(context.Background())
		if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
			return false
		}
		// Every advisory went through the broker's dead-letter path.
		adv, err := bus.JetStream().Stream(context.Background(), schemas.StreamAdvisories)
		if err != nil {
			return false
		}
		ai, err := adv.Info(context.Background())
		return err == nil && ai.State.Msgs == 0 && len(bus.DeadLetters(t, plugin)) > 0
	})
	return bus.DeadLetters(t, plugin)
}

// An always-failing handler with max_deliver 3 is called exactly 3 times,
// and the event is dead-lettered exactly once with the handler's last
// error.
func TestDeadLetterKeepsTheLastError(t *testing.T) {
	bus := plugintest.Start(t)
	p, calls := failing(t, bus, failingManifest(30*time.Second), func(_ context.Context, n int64) error {
		return fmt.Errorf("webhook answered 503 (attempt %d)", n)
	})
	bus.StartPlugin(t, p)
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityInfo, Summary: "x"}, nil)

	dls := waitDeadLetters(t, bus, "failing")
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3 (max_deliver)", n)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dls), dls)
	}
	dl := dls[0]
	want := "retries_exhausted: failed on the last of 3 deliveries: webhook answered 503 (attempt 3)"
	if dl.Reason != want || dl.Code != schemas.ReasonRetriesExhausted || dl.Cause != schemas.CauseTerminated || dl.Deliveries != 3 {
		t.Errorf("dead letter: reason %q code %q cause %q deliveries %d\nwant reason %q code %s cause terminated deliveries 3",
			dl.Reason, dl.Code, dl.Cause, dl.Deliveries, want, schemas.ReasonRetriesExhausted)
	}
	if st := p.Stats(); st.EventsFailed != 3 || st.EventsTerminated != 1 {
		t.Errorf("stats %+v, want 3 failures and 1 termination", st)
	}
}

// A last delivery whose handler runs out of time (it outlives the ack wait)
// is dead-lettered with the handler's error too, not as "max deliveries
// reached: the consumer never acknowledged it".
func TestDeadLetterAfterTimeoutKeepsTheLastError(t *testing.T) {
	bus := plugintest.Start(t)
	p, calls := failing(t, bus, failingManifest(time.Second), func(ctx context.Context, n int64) error {
		if n < 3 {
			return fmt.Errorf("webhook answered 503 (attempt %d)", n)
		}
		<-ctx.Done() // the last attempt hangs until its deadline
		return fmt.Errorf("post to webhook (attempt %d): %w", n, ctx.Err())
	})
	bus.StartPlugin(t, p)
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityInfo, Summary: "x"}, nil)

	dls := waitDeadLetters(t, bus, "failing")
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3 (max_deliver)", n)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dls), dls)
	}
	dl := dls[0]
	if dl.Code != schemas.ReasonRetriesExhausted || dl.Cause != schemas.CauseTerminated ||
		!strings.HasSuffix(dl.Reason, "post to webhook (attempt 3): context deadline exceeded") {
		t.Errorf("dead letter: reason %q code %q cause %q, want retries_exhausted (terminated) with the handler's last error",
			dl.Reason, dl.Code, dl.Cause)
	}
}

// An instance keeps the consumer's delivery limit current: when another
// version registers with a lower max_deliver while it runs, its last
// attempt still terminates the event with the handler's error.
func TestDeadLetterAfterMaxDeliverChanged(t *testing.T) {
	bus := plugintest.Start(t)
	m := failingManifest(30 * time.Second)
	m.Events.MaxDeliver = 5
	p, calls := failing(t, bus, m, func(_ context.Context, n int64) error {
		return fmt.Errorf("webhook answered 503 (attempt %d)", n)
	})
	bus.StartPlugin(t, p)

	// Another instance, of a new version, registers with max_deliver 3.
	next := failingManifest(30 * time.Second)
	next.Version = "1.1.0"
	var resp schemas.RegisterResponse
	bus.MustCall(t, schemas.APIPluginsRegister+".failing", schemas.RegisterRequest{Manifest: next}, &resp)
	if resp.Plugin.State != schemas.StateActive || resp.Plugin.Version != "1.1.0" {
		t.Fatalf("register 1.1.0: %+v", resp.Plugin)
	}
	cons, err := bus.JetStream().Consumer(context.Background(), schemas.StreamEvents, schemas.ConsumerName("failing"))
	if err != nil || cons.CachedInfo().Config.MaxDeliver != 3 {
		t.Fatalf("consumer after the upgrade: %v %+v", err, cons.CachedInfo())
	}
	// The running instance has seen the new registration (it applies the
	// record it watches).
	bus.WaitFor(t, func() bool { return p.State() == schemas.StateActive })

	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityInfo, Summary: "x"}, nil)
	dls := waitDeadLetters(t, bus, "failing")
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3 (the new max_deliver)", n)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dls), dls)
	}
	want := "retries_exhausted: failed on the last of 3 deliveries: webhook answered 503 (attempt 3)"
	if dl := dls[0]; dl.Reason != want || dl.Code != schemas.ReasonRetriesExhausted || dl.Cause != schemas.CauseTerminated {
		t.Errorf("dead letter: reason %q code %q cause %q, want %q (terminated)", dl.Reason, dl.Code, dl.Cause, want)
	}
}
