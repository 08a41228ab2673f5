package plugintest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// configSeen records the config every event handler call saw.
type configSeen struct {
	mu    sync.Mutex
	calls []string // the "target" config value per call
}

func (c *configSeen) add(v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, v)
}

func (c *configSeen) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func syncManifest() schemas.Manifest {
	return schemas.Manifest{
		Name: "cfgsync", Version: "1.0.0", Description: "reads its config in every event",
		Events: &schemas.EventSubscription{
			Types:      []string{schemas.TypeAlertFired},
			MaxDeliver: 5,
			Backoff:    []schemas.Duration{schemas.Duration(time.Millisecond)},
		},
		RequiredParams: []string{"target"},
	}
}

// newSyncPlugin makes a plugin whose event handler fails without a target
// (as notify-webhook does without a url) and records the target it saw.
// Its config handler takes a moment, like one that checks its settings
// against a remote service, and rejects the first rejectFirst configs it
// gets (the remote service is down).
func newSyncPlugin(t *testing.T, bus *plugintest.Bus, seen *configSeen, rejectFirst int, opts ...sdk.Option) *sdk.Plugin {
	t.Helper()
	p, err := sdk.New(syncManifest(), append([]sdk.Option{sdk.WithPrefix(bus.Prefix())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	p.OnConfig(func(ctx context.Context, cfg sdk.Config) error {
		// Slow, not a synchronisation: it widens the window in which an
		// SDK that consumed before applying the config would show it.
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
		if n := calls.Add(1); int(n) <= rejectFirst {
			seen.add("(config rejected)")
			return errors.New("cannot reach the target's service")
		}
		seen.add("(config " + cfg.String("target", "") + " applied)")
		return nil
	})
	p.HandleEvent(schemas.TypeAlertFired, func(_ context.Context, _ event.Event) error {
		target := p.Config().String("target", "")
		seen.add(target)
		if target == "" {
			return errors.New("no target configured")
		}
		return nil
	})
	return p
}

// A plugin restarted while events wait in its consumer handles none of
// them before its stored config is applied: the measured failure was
// notify-webhook failing 203 events with "no webhook url configured"
// after a restart under load.
func TestNoEventBeforeConfigIsApplied(t *testing.T) {
	restartUnderLoad(t, 0)
}

// When the restarted instance's config handler rejects the stored config
// at first, events wait (the instance is ready all the same) until a retry
// of it is accepted.
func TestEventsWaitForARejectedStoredConfig(t *testing.T) {
	restartUnderLoad(t, 1)
}

// restartUnderLoad stops a plugin, fires events, starts a new instance
// whose config handler rejects its first rejectFirst configs, and checks
// that every event handler call saw the stored config, and none came
// before the config handler accepted it.
func restartUnderLoad(t *testing.T, rejectFirst int) {
	// The broker must not notice the restart (no STALE in between), as
	// when hostd restarts a crashed plugin at once: the new instance's
	// registration is then a no-op that runs no config verb, and its
	// config comes from the config bucket only.
	bus := plugintest.Start(t, plugintest.WithHeartbeatInterval(time.Hour))
	first := newSyncPlugin(t, bus, &configSeen{}, 0, sdk.WithConfig(map[string]any{"target": "v1"}))
	in := bus.StartPlugin(t, first)
	bus.MustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "cfgsync", Set: map[string]any{"target": "v2"}}, nil)
	bus.WaitFor(t, func() bool { return first.Config().String("target", "") == "v2" })
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}

	const n = 20
	for i := range n {
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: fmt.Sprintf("a%d", i), Severity: schemas.SeverityInfo, Summary: "x"}, nil)
	}
	cons, err := bus.JetStream().Consumer(context.Background(), schemas.StreamEvents, schemas.ConsumerName("cfgsync"))
	if err != nil {
		t.Fatal(err)
	}
	bus.WaitFor(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == n
	})
	if st := bus.Plugin(t, "cfgsync").State; st != schemas.StateActive {
		t.Fatalf("state %s while the plugin is down, want ACTIVE (the broker must not notice)", st)
	}

	// The restarted instance registers with another initial config, which
	// the broker ignores: it holds one.
	seen := &configSeen{}
	second := newSyncPlugin(t, bus, seen, rejectFirst, sdk.WithConfig(map[string]any{"target": "initial"}))
	bus.StartPlugin(t, second)
	bus.WaitFor(t, func() bool { st := second.Stats(); return st.EventsHandled+st.EventsTerminated == n })

	calls := seen.snapshot()
	var want []string
	for range rejectFirst {
		want = append(want, "(config rejected)")
	}
	want = append(want, "(config v2 applied)")
	for range n {
		want = append(want, "v2")
	}
	if strings.Join(calls, " ") != strings.Join(want, " ") {
		t.Errorf("config and event handler calls, in order:\n got %s\nwant %s", strings.Join(calls, " "), strings.Join(want, " "))
	}
	if st := second.Stats(); st.EventsHandled != n || st.EventsFailed != 0 || st.ConfigsApplied != 1 || st.ConfigsRejected != uint64(rejectFirst) {
		t.Errorf("stats %+v, want %d events handled, no failure, 1 config applied, %d rejected", st, n, rejectFirst)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("%d events redelivered", info.NumRedelivered)
	}
}
