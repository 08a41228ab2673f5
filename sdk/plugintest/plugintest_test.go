package plugintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

func echoManifest() schemas.Manifest {
	return schemas.Manifest{
		Name: "echo", Version: "1.0.0", Description: "test plugin",
		Actions: []schemas.ActionSpec{{Command: "echo", Model: "machines", OptionalParams: []string{"echo/word"}}},
		Events: &schemas.EventSubscription{
			Types:      []string{schemas.TypeAlertFired},
			MaxDeliver: 3,
			Backoff:    []schemas.Duration{schemas.Duration(time.Millisecond)},
		},
		RequiredParams: []string{"greeting"},
	}
}

type echo struct {
	p      *sdk.Plugin
	alerts atomic.Int64
}

func newEcho(t *testing.T, bus *plugintest.Bus, opts ...sdk.Option) *echo {
	t.Helper()
	p, err := sdk.New(echoManifest(), append([]sdk.Option{sdk.WithPrefix(bus.Prefix())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{p: p}
	p.HandleAction("echo", func(_ context.Context, a *sdk.Action) (any, error) {
		w, err := a.String("echo/word", "nothing")
		return map[string]string{"said": p.Config().String("greeting", "") + " " + w}, err
	})
	p.HandleEvent(schemas.TypeAlertFired, func(_ context.Context, ev event.Event) error {
		alert, err := sdk.DecodeData[schemas.Alert](ev)
		if err != nil {
			return err
		}
		if alert.Labels["poison"] == "yes" {
			return sdk.Permanent(errors.New("poison alert " + alert.ID))
		}
		e.alerts.Add(1)
		return nil
	})
	return e
}

func TestPluginAgainstTheRealBroker(t *testing.T) {
	bus := plugintest.Start(t)
	e := newEcho(t, bus, sdk.WithConfig(map[string]any{"greeting": "hello"}))
	bus.StartPlugin(t, e.p)
	if got := bus.Plugin(t, "echo").State; got != schemas.StateActive || e.p.State() != schemas.StateActive {
		t.Fatalf("state = %s (plugin sees %s), want ACTIVE", got, e.p.State())
	}

	t.Run("action with an optional param from the machine", func(t *testing.T) {
		bus.MustCall(t, schemas.APIMachinesSetParam, schemas.MachineSetParamRequest{Machine: "m1", Param: "echo/word", Value: "world"}, nil)
		var resp schemas.MachineActionResponse
		bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "echo"}, &resp)
		if string(resp.Result) != `{"said":"hello world"}` {
			t.Errorf("result = %s", resp.Result)
		}
	})

	t.Run("events", func(t *testing.T) {
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "ok", Severity: schemas.SeverityWarning, Summary: "fine"}, nil)
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "bad", Severity: schemas.SeverityWarning, Summary: "x",
			Labels: map[string]string{"poison": "yes"}}, nil)
		bus.WaitFor(t, func() bool { return e.alerts.Load() == 1 && len(bus.DeadLetters(t, "echo")) == 1 })
		dl := bus.DeadLetters(t, "echo")[0]
		if dl.Reason != "permanent_failure: poison alert bad" || dl.Code != schemas.ReasonPermanent || dl.Cause != "terminated" || dl.Header.Get("ce-type") != schemas.TypeAlertFired {
			t.Errorf("dead letter = %+v", dl)
		}
	})

	t.Run("config change reaches every instance", func(t *testing.T) {
		second := newEcho(t, bus)
		bus.StartPlugin(t, second.p)
		if got := second.p.Config().String("greeting", ""); got != "hello" {
			t.Fatalf("second instance greeting = %q, want the stored hello", got)
		}
		var rec schemas.PluginRecord
		bus.MustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "echo", Set: map[string]any{"greeting": "hi"}}, &rec)
		bus.WaitFor(t, func() bool {
			return e.p.Config().String("greeting", "") == "hi" && second.p.Config().String("greeting", "") == "hi"
		})
	})
}

func TestMissingRequiredConfig(t *testing.T) {
	bus := plugintest.Start(t)
	e := newEcho(t, bus)
	bus.StartPlugin(t, e.p)
	rec := bus.Plugin(t, "echo")
	if rec.State != schemas.StateError || !errors.Is(rec.LastError, schemas.ErrMissingParam) || e.p.State() != schemas.StateError {
		t.Fatalf("record = %s %v (plugin sees %s), want ERROR missing_param", rec.State, rec.LastError, e.p.State())
	}
	// Events fired while misconfigured wait for the plugin.
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "early", Severity: schemas.SeverityInfo, Summary: "x"}, nil)
	bus.MustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "echo", Set: map[string]any{"greeting": "hey"}}, nil)
	bus.WaitFor(t, func() bool { return e.p.State() == schemas.StateActive && e.alerts.Load() == 1 })
}

func TestStaleAndBack(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithHeartbeatInterval(50*time.Millisecond))
	first := newEcho(t, bus, sdk.WithConfig(map[string]any{"greeting": "hello"}))
	in := bus.StartPlugin(t, first.p)
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	bus.WaitFor(t, func() bool { return bus.Plugin(t, "echo").State == schemas.StateStale })
	second := newEcho(t, bus)
	bus.StartPlugin(t, second.p)
	bus.WaitFor(t, func() bool { return bus.Plugin(t, "echo").State == schemas.StateActive })
	var resp schemas.MachineActionResponse
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m", Command: "echo"}, &resp)
	var got map[string]string
	if err := json.Unmarshal(resp.Result, &got); err != nil || !strings.HasPrefix(got["said"], "hello") {
		t.Errorf("result %s, %v", resp.Result, err)
	}
}

func TestCustomPrefix(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithPrefix("other"))
	if bus.Prefix() != "other" {
		t.Fatalf("prefix %q", bus.Prefix())
	}
	e := newEcho(t, bus, sdk.WithConfig(map[string]any{"greeting": "hello"}))
	bus.StartPlugin(t, e.p)
	var resp schemas.MachineActionResponse
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m", Command: "echo"}, &resp)
}
