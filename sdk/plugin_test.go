package sdk_test

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
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

func TestNewChecksManifest(t *testing.T) {
	tests := []struct {
		name    string
		m       schemas.Manifest
		opts    []sdk.Option
		wantErr error
		field   string
	}{
		{name: "ok", m: schemas.Manifest{Name: "ok-plugin", Version: "1.0.0"}},
		{name: "empty name", m: schemas.Manifest{Version: "1.0.0"}, wantErr: sdk.ErrInvalidManifest, field: "name"},
		{name: "bad name", m: schemas.Manifest{Name: "Bad_Name", Version: "1.0.0"}, wantErr: sdk.ErrInvalidManifest, field: "name"},
		{name: "empty version", m: schemas.Manifest{Name: "x"}, wantErr: sdk.ErrInvalidManifest, field: "version"},
		{name: "not semver", m: schemas.Manifest{Name: "x", Version: "v1"}, wantErr: sdk.ErrInvalidManifest, field: "version"},
		{name: "events without types", m: schemas.Manifest{Name: "x", Version: "1.0.0", Events: &schemas.EventSubscription{}}, wantErr: sdk.ErrInvalidManifest, field: "events.types"},
		{name: "empty command", m: schemas.Manifest{Name: "x", Version: "1.0.0", Actions: []schemas.ActionSpec{{Model: "machines"}}}, wantErr: sdk.ErrInvalidManifest, field: "actions[0].command"},
		{name: "duplicate command", m: schemas.Manifest{Name: "x", Version: "1.0.0", Actions: []schemas.ActionSpec{{Command: "a"}, {Command: "a"}}}, wantErr: sdk.ErrInvalidManifest, field: "actions[1]"},
		{name: "hooks", m: schemas.Manifest{Name: "x", Version: "1.0.0", Hooks: []schemas.HookSpec{
			{Hook: schemas.HookJobPreDeploy, Timeout: schemas.Duration(schemas.MaxHookTimeout), FailurePolicy: schemas.FailurePolicyIgnore}, {Hook: schemas.HookAlertPreNotify}}}},
		{name: "unknown hook point", m: schemas.Manifest{Name: "x", Version: "1.0.0", Hooks: []schemas.HookSpec{{Hook: "job.post_deploy"}}}, wantErr: sdk.ErrInvalidManifest, field: `manifest.hooks[0].hook`},
		{name: "reserved name", m: schemas.Manifest{Name: "broker", Version: "1.0.0"}, wantErr: sdk.ErrInvalidManifest, field: `manifest.name`},
		{name: "name like an event version", m: schemas.Manifest{Name: "v1", Version: "1.0.0"}, wantErr: sdk.ErrInvalidManifest, field: `manifest.name`},
		{name: "duplicate hook", m: schemas.Manifest{Name: "x", Version: "1.0.0", Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}, {Hook: schemas.HookJobPreDeploy}}}, wantErr: sdk.ErrInvalidManifest, field: "hooks[1].hook"},
		{name: "hook timeout too long", m: schemas.Manifest{Name: "x", Version: "1.0.0", Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, Timeout: schemas.Duration(time.Minute)}}}, wantErr: sdk.ErrInvalidManifest, field: "hooks[0].timeout"},
		{name: "bad failure policy", m: schemas.Manifest{Name: "x", Version: "1.0.0", Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, FailurePolicy: "retry"}}}, wantErr: sdk.ErrInvalidManifest, field: "hooks[0].failure_policy"},
		{name: "bad hook concurrency", m: schemas.Manifest{Name: "x", Version: "1.0.0"}, opts: []sdk.Option{sdk.WithHookConcurrency(0)}, wantErr: sdk.ErrInvalidOption, field: "hook concurrency"},
		{name: "bad prefix", m: schemas.Manifest{Name: "x", Version: "1.0.0"}, opts: []sdk.Option{sdk.WithPrefix("a.b")}, wantErr: sdk.ErrInvalidOption, field: "prefix"},
		{name: "bad register timeout", m: schemas.Manifest{Name: "x", Version: "1.0.0"}, opts: []sdk.Option{sdk.WithRegisterTimeout(0)}, wantErr: sdk.ErrInvalidOption, field: "register timeout"},
		{name: "bad handler timeout", m: schemas.Manifest{Name: "x", Version: "1.0.0"}, opts: []sdk.Option{sdk.WithHandlerTimeout(-time.Second)}, wantErr: sdk.ErrInvalidOption, field: "handler timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := sdk.New(tt.m, tt.opts...)
			if tt.wantErr == nil {
				if err != nil || p == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

func TestHandleActionPanicsOnMisuse(t *testing.T) {
	tests := map[string]func(p *sdk.Plugin){
		"empty command": func(p *sdk.Plugin) {
			p.HandleAction("", func(context.Context, *sdk.Action) (any, error) { return nil, nil })
		},
		"nil handler": func(p *sdk.Plugin) { p.HandleAction("x", nil) },
		"duplicate": func(p *sdk.Plugin) {
			h := func(context.Context, *sdk.Action) (any, error) { return nil, nil }
			p.HandleAction("x", h)
			p.HandleAction("x", h)
		},
		"bad event pattern": func(p *sdk.Plugin) { p.HandleEvent("io.*.x", nil) },
		"empty hook": func(p *sdk.Plugin) {
			p.HandleHook("", func(context.Context, *sdk.HookRequest) (*schemas.HookResponse, error) { return nil, nil })
		},
		"nil hook handler": func(p *sdk.Plugin) { p.HandleHook(schemas.HookJobPreDeploy, nil) },
		"duplicate hook": func(p *sdk.Plugin) {
			p.OnPreDeploy(func(context.Context, schemas.JobDeployRequest) (*schemas.HookResponse, error) { return nil, nil })
			p.HandleHook(schemas.HookJobPreDeploy, func(context.Context, *sdk.HookRequest) (*schemas.HookResponse, error) { return nil, nil })
		},
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			p := newPlugin(t, schemas.Manifest{Name: "x", Version: "1.0.0"})
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f(p)
		})
	}
}

func TestActions(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	p := newPlugin(t, schemas.Manifest{Name: "actor", Version: "1.0.0", Actions: []schemas.ActionSpec{
		{Command: "add", Model: "machines"}, {Command: "fail", Model: "machines"}, {Command: "need", Model: "machines"},
		{Command: "panic", Model: "machines"}, {Command: "raw", Model: "machines"}}})
	p.HandleAction("add", func(ctx context.Context, a *sdk.Action) (any, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("handler context has no deadline")
		}
		x, err := a.Int("x", 0)
		if err != nil {
			return nil, err
		}
		y, err := a.Int("y", 10)
		if err != nil {
			return nil, err
		}
		return map[string]any{"sum": x + y, "object": a.Object}, nil
	})
	p.HandleAction("fail", func(context.Context, *sdk.Action) (any, error) {
		return nil, fmt.Errorf("disk full")
	})
	p.HandleAction("need", func(context.Context, *sdk.Action) (any, error) {
		return nil, sdk.MissingParam("thing")
	})
	p.HandleAction("panic", func(context.Context, *sdk.Action) (any, error) { panic("boom") })
	p.HandleAction("raw", func(context.Context, *sdk.Action) (any, error) { return json.RawMessage(`[1,2]`), nil })
	runPlugin(t, s.ClientURL(), p)
	nc := connect(t, s.ClientURL())

	tests := []struct {
		name     string
		req      schemas.ActionRequest
		want     string // JSON result
		wantCode string
		wantMsg  string
	}{
		{name: "result", req: schemas.ActionRequest{Command: "add", Object: "m1", Params: map[string]any{"x": 2, "y": 3}}, want: `{"object":"m1","sum":5}`},
		{name: "default param", req: schemas.ActionRequest{Command: "add", Params: map[string]any{"x": 2}}, want: `{"object":"","sum":12}`},
		{name: "raw result", req: schemas.ActionRequest{Command: "raw"}, want: `[1,2]`},
		{name: "invalid param", req: schemas.ActionRequest{Command: "add", Params: map[string]any{"x": "two"}}, wantCode: schemas.CodeInvalidField, wantMsg: `param "x"`},
		{name: "fraction is not an int", req: schemas.ActionRequest{Command: "add", Params: map[string]any{"x": 1.5}}, wantCode: schemas.CodeInvalidField, wantMsg: "integer"},
		{name: "unknown command", req: schemas.ActionRequest{Command: "nope"}, wantCode: schemas.CodeUnknownAction, wantMsg: `"nope"`},
		{name: "plain error", req: schemas.ActionRequest{Command: "fail"}, wantCode: schemas.CodePluginError, wantMsg: "disk full"},
		{name: "coded error", req: schemas.ActionRequest{Command: "need"}, wantCode: schemas.CodeMissingParam, wantMsg: `"thing"`},
		{name: "panic", req: schemas.ActionRequest{Command: "panic"}, wantCode: schemas.CodePluginError, wantMsg: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var resp schemas.ActionResponse
			err := wire.Call(ctx, nc, wire.PluginSubject(testPrefix, "actor", schemas.VerbAction), tt.req, &resp)
			if tt.wantCode != "" {
				var se *schemas.Error
				if !errors.As(err, &se) || se.Code != tt.wantCode {
					t.Fatalf("error = %v, want code %s", err, tt.wantCode)
				}
				if !strings.Contains(se.Message, tt.wantMsg) || se.Plugin != "actor" {
					t.Errorf("error %+v: want message with %q and plugin actor", se, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Result) != tt.want {
				t.Errorf("result = %s, want %s", resp.Result, tt.want)
			}
		})
	}
	st := p.Stats()
	if st.ActionsHandled != 3 || st.ActionsFailed != 6 {
		t.Errorf("stats = %+v, want 3 handled and 6 failed", st)
	}
	// `nats micro stats` shows the same on the action endpoint, and each
	// other endpoint its own calls: the fake broker's init, config and
	// verify once each.
	msg, err := nc.Request("$SRV.STATS."+wire.PluginService("actor"), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ms micro.Stats
	if err := json.Unmarshal(msg.Data, &ms); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{schemas.VerbAction: {9, 6}, schemas.VerbInit: {1, 0}, schemas.VerbConfig: {1, 0}, schemas.VerbVerify: {1, 0}}
	for _, e := range ms.Endpoints {
		w, ok := want[e.Name]
		if !ok {
			t.Errorf("unexpected endpoint %s", e.Name)
			continue
		}
		delete(want, e.Name)
		if e.NumRequests != w[0] || e.NumErrors != w[1] {
			t.Errorf("endpoint %s: %d requests, %d errors; want %d and %d", e.Name, e.NumRequests, e.NumErrors, w[0], w[1])
		}
	}
	if len(want) > 0 {
		t.Errorf("endpoints missing from $SRV.STATS: %v", want)
	}
}

func TestLifecycle(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	m := schemas.Manifest{Name: "life", Version: "1.2.3", RequiredParams: []string{"token"}}
	p := newPlugin(t, m, sdk.WithConfig(map[string]any{"token": "bad", "n": 1}))
	var mu sync.Mutex
	var calls []string
	record := func(s string) { mu.Lock(); calls = append(calls, s); mu.Unlock() }
	p.OnInit(func(_ context.Context, req schemas.InitRequest) (map[string]any, error) {
		record("init " + req.Name + " " + req.Version)
		return map[string]any{"build": "abc"}, nil
	})
	p.OnConfig(func(_ context.Context, cfg sdk.Config) error {
		record("config " + cfg.String("token", ""))
		if cfg.String("token", "") == "" {
			return errors.New("empty token")
		}
		return nil
	})
	p.OnVerify(func(context.Context) error {
		tok := p.Config().String("token", "")
		record("verify " + tok)
		if tok != "good" {
			return fmt.Errorf("token %q is refused", tok)
		}
		return nil
	})
	runPlugin(t, s.ClientURL(), p)
	if got := p.State(); got != schemas.StateError {
		t.Fatalf("state = %s, want ERROR (verify refused the token)", got)
	}
	if got := p.Config().Int("n", 0); got != 1 {
		t.Errorf("config n = %d, want the initial config's 1", got)
	}

	rec := b.setConfig(t, "life", map[string]any{"token": "good"})
	if rec.State != schemas.StateActive || rec.Metadata["build"] != "abc" {
		t.Fatalf("record = %+v, want ACTIVE with metadata", rec)
	}
	waitFor(t, "state ACTIVE", func() bool { return p.State() == schemas.StateActive })

	// A config the handler rejects reaches the caller and leaves the old one.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := wire.Call(ctx, connect(t, s.ClientURL()), wire.PluginSubject(testPrefix, "life", schemas.VerbConfig), schemas.ConfigRequest{Config: map[string]any{"token": ""}}, nil)
	if !errors.Is(err, schemas.ErrPluginError) || !strings.Contains(err.Error(), "empty token") {
		t.Errorf("config error = %v, want plugin_error empty token", err)
	}
	if got := p.Config().String("token", ""); got != "good" {
		t.Errorf("token = %q after a rejected config, want good", got)
	}
	mu.Lock()
	got := strings.Join(calls, "; ")
	mu.Unlock()
	want := "init life 1.2.3; config bad; verify bad; init life 1.2.3; config good; verify good; config "
	if got != want {
		t.Errorf("calls = %q\nwant    %q", got, want)
	}
}

func TestMissingRequiredParamIsNotFatal(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	p := newPlugin(t, schemas.Manifest{Name: "needy", Version: "1.0.0", RequiredParams: []string{"url"}})
	runPlugin(t, s.ClientURL(), p)
	if got := p.State(); got != schemas.StateError {
		t.Fatalf("state = %s, want ERROR", got)
	}
	if len(p.Config()) != 0 {
		t.Errorf("config = %v, want empty", p.Config())
	}
	b.setConfig(t, "needy", map[string]any{"url": "http://x"})
	waitFor(t, "ACTIVE with config", func() bool {
		return p.State() == schemas.StateActive && p.Config().String("url", "") == "http://x"
	})
}

// Two instances share the config: the one that takes the config verb
// applies it once, the other applies it from the bucket, once.
func TestConfigPushAppliesOncePerInstance(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	m := schemas.Manifest{Name: "pair", Version: "1.0.0"}
	type counts struct {
		sync.Mutex
		n map[string]int
	}
	newInstance := func() (*sdk.Plugin, *counts) {
		c := &counts{n: map[string]int{}}
		p := newPlugin(t, m)
		p.OnConfig(func(_ context.Context, cfg sdk.Config) error {
			c.Lock()
			c.n[cfg.String("v", "")]++
			c.Unlock()
			return nil
		})
		return p, c
	}
	p1, c1 := newInstance()
	runPlugin(t, s.ClientURL(), p1)
	p2, c2 := newInstance()
	runPlugin(t, s.ClientURL(), p2)

	for _, v := range []string{"a", "b", "c"} {
		b.setConfig(t, "pair", map[string]any{"v": v})
		waitFor(t, "both instances at "+v, func() bool {
			return p1.Config().String("v", "") == v && p2.Config().String("v", "") == v
		})
	}
	// By now both watchers have seen "a" and "b" and any duplicate apply
	// would have happened.
	for i, c := range []*counts{c1, c2} {
		c.Lock()
		if c.n["a"] != 1 || c.n["b"] != 1 {
			t.Errorf("instance %d applied a %d times and b %d times, want once each", i+1, c.n["a"], c.n["b"])
		}
		c.Unlock()
	}
}

func TestRegisterWaitsForBroker(t *testing.T) {
	s := startServer(t)
	b := newFakeStore(t, s.ClientURL()) // stream and buckets, no API yet
	p := newPlugin(t, schemas.Manifest{Name: "early", Version: "1.0.0"})
	startPlugin(t, s.ClientURL(), p)
	waitFor(t, "the plugin's micro service", func() bool {
		_, err := b.nc.Request("$SRV.PING."+wire.PluginService("early"), nil, time.Second)
		return err == nil
	})
	select {
	case <-p.Ready():
		t.Fatal("ready before any broker answered")
	default:
	}
	b.serve()
	select {
	case <-p.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("not ready after the broker came up")
	}
	if p.State() != schemas.StateActive {
		t.Errorf("state = %s", p.State())
	}
}

func TestRegisterRefused(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	p := newPlugin(t, schemas.Manifest{Name: "refused", Version: "1.0.0"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.Run(ctx, connect(t, s.ClientURL()))
	if !errors.Is(err, sdk.ErrRegister) || !errors.Is(err, schemas.ErrInvalidField) {
		t.Fatalf("Run error = %v, want ErrRegister wrapping invalid_field", err)
	}
	if err := p.Run(ctx, connect(t, s.ClientURL())); !errors.Is(err, sdk.ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
}

func TestReregister(t *testing.T) {
	tests := []struct {
		name    string
		trigger func(t *testing.T, b *fakeBroker, r *running)
	}{
		{name: "after reconnect", trigger: func(t *testing.T, _ *fakeBroker, r *running) {
			if err := r.nc.ForceReconnect(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "when marked stale", trigger: func(_ *testing.T, b *fakeBroker, r *running) {
			b.putRecord(schemas.PluginRecord{Name: r.p.Name(), Version: "1.0.0", State: schemas.StateStale, Manifest: r.p.Manifest()})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			b := newFakeBroker(t, s.ClientURL())
			p := newPlugin(t, schemas.Manifest{Name: "comeback", Version: "1.0.0"})
			r := runPlugin(t, s.ClientURL(), p)
			if n := b.registerCount(p.InstanceID()); n != 1 {
				t.Fatalf("registrations = %d, want 1", n)
			}
			tt.trigger(t, b, r)
			waitFor(t, "a second registration", func() bool { return b.registerCount(p.InstanceID()) == 2 })
			waitFor(t, "ACTIVE again", func() bool { return p.State() == schemas.StateActive && p.Stats().Registrations == 2 })
		})
	}
}

func TestShutdown(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	p := newPlugin(t, schemas.Manifest{Name: "bye", Version: "1.0.0", Events: &schemas.EventSubscription{Types: []string{schemas.TypeJobDeployed}}})
	p.HandleEvent(schemas.TypeJobDeployed, func(context.Context, eventT) error { return nil })
	r := runPlugin(t, s.ClientURL(), p)
	if err := r.stop(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if !r.nc.IsClosed() {
		t.Error("connection not closed after Run returned")
	}
	_, err := connect(t, s.ClientURL()).Request("$SRV.PING."+wire.PluginService("bye"), nil, 2*time.Second)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("ping after shutdown: %v, want no responders", err)
	}
}
