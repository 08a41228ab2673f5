package sdk_test

import (
	"context"
	"errors"
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

// Run refuses handlers and a manifest that disagree, naming each mismatch.
func TestRunRefusesMismatchedHandlers(t *testing.T) {
	s := startServer(t)
	noop := func(context.Context, *sdk.Action) (any, error) { return nil, nil }
	hook := func(context.Context, *sdk.HookRequest) (*schemas.HookResponse, error) { return sdk.Continue(), nil }
	onEvent := func(context.Context, event.Event) error { return nil }
	tests := []struct {
		name  string
		m     schemas.Manifest
		setup func(p *sdk.Plugin)
		want  string
	}{
		{"undeclared action", schemas.Manifest{}, func(p *sdk.Plugin) { p.HandleAction("zap", noop) },
			`a handler is set for action "zap", which the manifest does not declare`},
		{"declared action without handler", schemas.Manifest{Actions: []schemas.ActionSpec{{Command: "zap", Model: "machines"}}}, nil,
			`action "zap" is declared but has no handler`},
		{"undeclared hook", schemas.Manifest{}, func(p *sdk.Plugin) { p.HandleHook(schemas.HookJobPreDeploy, hook) },
			"a handler is set for job.pre_deploy but the manifest does not declare it"},
		{"not a hook point", schemas.Manifest{}, func(p *sdk.Plugin) { p.HandleHook("job.post_deploy", hook) },
			`a handler is set for "job.post_deploy", which is not a hook point`},
		{"declared hook without handler", schemas.Manifest{Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDelete}}}, nil,
			"hook job.pre_delete is declared but has no handler"},
		{"event handler without events", schemas.Manifest{}, func(p *sdk.Plugin) { p.HandleEvent(schemas.TypeAlertFired, onEvent) },
			`a handler is set for events "io.plugbus.alert.v1.fired", but events.types declares no type it matches`},
		{"declared event type without handler", schemas.Manifest{Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired, schemas.TypeAlertResolved}}},
			func(p *sdk.Plugin) { p.HandleEvent(schemas.TypeAlertFired, onEvent) },
			"event type io.plugbus.alert.v1.resolved is declared in events.types but has no handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.m.Name, tt.m.Version = "mismatch", "1.0.0"
			p := newPlugin(t, tt.m)
			if tt.setup != nil {
				tt.setup(p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := p.Run(ctx, connect(t, s.ClientURL()))
			if !errors.Is(err, sdk.ErrInvalidManifest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want ErrInvalidManifest naming %q", err, tt.want)
			}
		})
	}
	// Patterns cover what they match: a wildcard handler for declared
	// types, an exact handler under a declared wildcard.
	p := newPlugin(t, schemas.Manifest{Name: "patterns", Version: "1.0.0",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired, schemas.TypeAlertResolved}}})
	p.HandleEvent("io.plugbus.alert.v1.*", onEvent)
	newFakeBroker(t, s.ClientURL())
	runPlugin(t, s.ClientURL(), p)
}

// Middleware wraps every kind of handler call, outermost first, and may
// answer instead of the handler.
func TestMiddleware(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	m := schemas.Manifest{Name: "wrapped", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "add", Model: "machines"}, {Command: "blocked", Model: "machines"}},
		Hooks:   []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}},
		Events:  &schemas.EventSubscription{Types: []string{schemas.TypeJobDeployed}}}
	p := newPlugin(t, m)
	var mu sync.Mutex
	var calls []string
	record := func(tag string) sdk.Middleware {
		return func(next sdk.Next) sdk.Next {
			return func(ctx context.Context, c *sdk.Call) (any, error) {
				mu.Lock()
				calls = append(calls, tag+" "+c.Kind+" "+c.Name)
				mu.Unlock()
				return next(ctx, c)
			}
		}
	}
	p.Use(record("outer"), record("inner"))
	p.Use(func(next sdk.Next) sdk.Next {
		return func(ctx context.Context, c *sdk.Call) (any, error) {
			if c.Kind == sdk.KindAction && c.Name == "blocked" {
				return nil, schemas.Errorf(schemas.CodeConflict, "", "blocked by middleware")
			}
			return next(ctx, c)
		}
	})
	handled := make(chan string, 4)
	p.HandleAction("add", func(context.Context, *sdk.Action) (any, error) { return 3, nil })
	p.HandleAction("blocked", func(context.Context, *sdk.Action) (any, error) {
		t.Error("the middleware should have answered")
		return nil, nil
	})
	p.OnPreDeploy(func(context.Context, schemas.JobDeployRequest) (*schemas.HookResponse, error) {
		return sdk.Continue(), nil
	})
	p.HandleEvent(schemas.TypeJobDeployed, func(_ context.Context, e event.Event) error { handled <- e.ID(); return nil })
	runPlugin(t, s.ClientURL(), p)
	nc := connect(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var resp schemas.ActionResponse
	if err := wire.Call(ctx, nc, wire.PluginSubject(testPrefix, "wrapped", schemas.VerbAction), schemas.ActionRequest{Command: "add"}, &resp); err != nil || string(resp.Result) != "3" {
		t.Fatalf("add: %s, %v", resp.Result, err)
	}
	err := wire.Call(ctx, nc, wire.PluginSubject(testPrefix, "wrapped", schemas.VerbAction), schemas.ActionRequest{Command: "blocked"}, nil)
	if !errors.Is(err, schemas.ErrConflict) || !strings.Contains(err.Error(), "blocked by middleware") {
		t.Errorf("blocked: %v", err)
	}
	if _, se := callHook(t, nc, "wrapped", schemas.HookJobPreDeploy, schemas.HookRequest{Object: "job/x", Payload: jobPayload("nginx")}); se != nil {
		t.Errorf("hook: %v", se)
	}
	b.publish(t, "ev-mw", schemas.TypeJobDeployed, schemas.JobDeployedData{Name: "j", Version: "1", Image: "i"})
	select {
	case id := <-handled:
		if id != "ev-mw" {
			t.Errorf("handled %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("event not handled")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"outer init init", "inner init init", "outer config config", "inner config config", "outer verify verify", "inner verify verify",
		"outer action add", "inner action add", "outer action blocked", "inner action blocked",
		"outer hook job.pre_deploy", "inner hook job.pre_deploy", "outer event io.plugbus.job.v1.deployed", "inner event io.plugbus.job.v1.deployed",
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("middleware saw\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
}

// The plugin's broker client can be taken in setup; it fails clearly
// until Run connects and works from handlers and OnShutdown.
func TestClientAndOnShutdown(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	p := newPlugin(t, schemas.Manifest{Name: "clienter", Version: "1.0.0", Actions: []schemas.ActionSpec{{Command: "cfg", Model: "machines"}}})
	c := p.Client() // as a setup function would
	_, err := c.ConfigPlugin(context.Background(), "clienter", nil)
	if !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("call before Run = %v, want ErrNotConnected", err)
	}
	p.HandleAction("cfg", func(ctx context.Context, _ *sdk.Action) (any, error) {
		rec, err := c.ConfigPlugin(ctx, "clienter", nil)
		if err != nil {
			return nil, err
		}
		return rec.Name, nil
	})
	var mu sync.Mutex
	var order []string
	for _, name := range []string{"first", "second"} {
		p.OnShutdown(func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("shutdown context has no deadline")
			}
			// The connection is still up: the bus can be called.
			_, err := c.ConfigPlugin(ctx, "clienter", nil)
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return err
		})
	}
	r := runPlugin(t, s.ClientURL(), p)
	nc := connect(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp schemas.ActionResponse
	if err := wire.Call(ctx, nc, wire.PluginSubject(testPrefix, "clienter", schemas.VerbAction), schemas.ActionRequest{Command: "cfg"}, &resp); err != nil || string(resp.Result) != `"clienter"` {
		t.Fatalf("client from a handler: %s, %v", resp.Result, err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != "second,first" {
		t.Errorf("shutdown functions ran as %v, want the last added first", order)
	}
}
