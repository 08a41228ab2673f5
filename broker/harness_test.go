package broker

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// startServer runs an in-process nats-server with JetStream on a random
// loopback port and a temp store.
func startServer(t testing.TB) *server.Server { return testnats.Start(t, true) }

type testBus struct {
	b *Broker
	// opts connect to the bus: on the embedded server (auth on) with the
	// broker's own credentials, so tests that are not about permissions
	// may do anything.
	opts   []nats.Option
	nc     *nats.Conn
	js     jetstream.JetStream
	cancel context.CancelFunc
	done   chan error
}

// startBroker runs a broker against url (or embedded when cfg.NATSURL is
// set by the caller) and a client connection to it.
func startBroker(t testing.TB, cfg Config) *testBus {
	t.Helper()
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Hour
	}
	if cfg.PluginTimeout == 0 {
		cfg.PluginTimeout = 2 * time.Second
	}
	cfg.SelfCheck = true
	if cfg.Logger == nil {
		l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
		cfg.Logger = &l
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb := &testBus{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { tb.done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-tb.done:
		t.Fatalf("broker stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker not ready within 30s")
	}
	if cfg.NATSURL == "" {
		tb.opts = append(tb.opts, nats.UserCredentials(filepath.Join(cfg.DataDir, authDirName, "broker.creds")))
	}
	tb.nc, err = nats.Connect(b.NATSURL(), tb.opts...)
	if err != nil {
		t.Fatal(err)
	}
	tb.js, _ = jetstream.New(tb.nc)
	t.Cleanup(tb.stop)
	return tb
}

func (tb *testBus) stop() {
	if tb.cancel == nil {
		return
	}
	tb.nc.Close()
	tb.cancel()
	<-tb.done
	tb.cancel = nil
}

// call sends an API request and decodes the reply.
func (tb *testBus) call(t testing.TB, endpoint string, req, resp any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wire.Call(ctx, tb.nc, wire.APISubject(tb.b.cfg.Prefix, endpoint), req, resp)
}

func (tb *testBus) mustCall(t testing.TB, endpoint string, req, resp any) {
	t.Helper()
	if err := tb.call(t, endpoint, req, resp); err != nil {
		t.Fatalf("%s: %v", endpoint, err)
	}
}

// waitFor polls cond until it holds, failing the test after a bounded wait.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantCode asserts err is a *schemas.Error with code (and field when set).
func wantCode(t testing.TB, err error, code, field string) *schemas.Error {
	t.Helper()
	var e *schemas.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *schemas.Error %s, got %v", code, err)
	}
	if e.Code != code {
		t.Fatalf("want code %s, got %s: %s", code, e.Code, e.Message)
	}
	if field != "" && e.Field != field {
		t.Fatalf("want field %q, got %q (%s)", field, e.Field, e.Message)
	}
	if e.Message == "" {
		t.Fatalf("error %s has no message", code)
	}
	return e
}

// fakePlugin is a plugin speaking the control protocol directly with micro,
// so broker tests control every answer. (Plugins are written with the SDK;
// this is the broker's view of one.)
type fakePlugin struct {
	t        testing.TB
	manifest schemas.Manifest
	nc       *nats.Conn
	svc      *wire.Service

	mu       sync.Mutex
	initErr  *schemas.Error
	notReady string
	configs  []map[string]any
	actions  []schemas.ActionRequest
	result   any
	actErr   *schemas.Error
	actDelay time.Duration // how long each action takes
	// onAction, when set (before start), sees each action request as it
	// arrives ("enter") and as it is answered ("exit").
	onAction func(phase string, req schemas.ActionRequest)
	cfgErr   *schemas.Error
	hooks    map[string]func(schemas.HookRequest) (schemas.HookResponse, error)
	hookReqs []schemas.HookRequest
	// hookKeys are the Idempotency-Key headers of hookReqs.
	hookKeys []string
}

// onHook sets the answer to a hook point; set it before start.
func (p *fakePlugin) onHook(hook string, h func(schemas.HookRequest) (schemas.HookResponse, error)) {
	if p.hooks == nil {
		p.hooks = map[string]func(schemas.HookRequest) (schemas.HookResponse, error){}
	}
	p.hooks[hook] = h
}

func (p *fakePlugin) hookCalls() []schemas.HookRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]schemas.HookRequest(nil), p.hookReqs...)
}

// hookCallKeys are the idempotency keys of the hook calls, in order.
func (p *fakePlugin) hookCallKeys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.hookKeys...)
}

func newFakePlugin(t testing.TB, url string, m schemas.Manifest, opts ...nats.Option) *fakePlugin {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &fakePlugin{t: t, manifest: m, nc: nc}
}

// start adds the micro service answering init, config, verify and action.
func (p *fakePlugin) start(prefix string) {
	p.t.Helper()
	svc, err := wire.NewService(p.nc, wire.Config{Name: wire.PluginService(p.manifest.Name), Version: p.manifest.Version})
	if err != nil {
		p.t.Fatal(err)
	}
	add := func(verb string, h func(data []byte) (any, error)) {
		err := svc.AddEndpoint(wire.Endpoint{Name: verb, Subject: wire.PluginSubject(prefix, p.manifest.Name, verb), Concurrency: 16,
			Handler: func(_ context.Context, r *wire.Request) {
				resp, err := h(r.Data())
				_ = r.Reply(resp, err)
			}})
		if err != nil {
			p.t.Fatal(err)
		}
	}
	add(schemas.VerbInit, func([]byte) (any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.initErr != nil {
			return nil, p.initErr
		}
		return schemas.InitResponse{Metadata: map[string]any{"fake": true}}, nil
	})
	add(schemas.VerbConfig, func(d []byte) (any, error) {
		var req schemas.ConfigRequest
		_ = json.Unmarshal(d, &req)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cfgErr != nil {
			return nil, p.cfgErr
		}
		p.configs = append(p.configs, req.Config)
		return schemas.ConfigResponse{}, nil
	})
	add(schemas.VerbVerify, func([]byte) (any, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return schemas.VerifyResponse{Ready: p.notReady == "", Message: p.notReady}, nil
	})
	add(schemas.VerbAction, func(d []byte) (any, error) {
		var req schemas.ActionRequest
		_ = json.Unmarshal(d, &req)
		if p.onAction != nil {
			p.onAction("enter", req)
			defer p.onAction("exit", req)
		}
		p.mu.Lock()
		delay := p.actDelay
		p.mu.Unlock()
		time.Sleep(delay)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.actions = append(p.actions, req)
		if p.actErr != nil {
			return nil, p.actErr
		}
		res, _ := json.Marshal(p.result)
		return schemas.ActionResponse{Result: res}, nil
	})
	for hook, h := range p.hooks {
		h := h
		err := svc.AddEndpoint(wire.Endpoint{Name: endpointName(hook), Subject: wire.HookSubject(prefix, hook, p.manifest.Name),
			// Concurrent, so a slow step does not queue the next request
			// behind it.
			Concurrency: 64,
			Handler: func(_ context.Context, r *wire.Request) {
				var req schemas.HookRequest
				_ = json.Unmarshal(r.Data(), &req)
				p.mu.Lock()
				p.hookReqs = append(p.hookReqs, req)
				p.hookKeys = append(p.hookKeys, r.Headers().Get(wire.HeaderIdempotencyKey))
				p.mu.Unlock()
				resp, err := h(req)
				_ = r.Reply(resp, err)
			}})
		if err != nil {
			p.t.Fatal(err)
		}
	}
	p.svc = svc
	// Make sure the server has the subscriptions before anyone calls them.
	if err := p.nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *fakePlugin) stopService() { _ = p.svc.Stop(context.Background()) }

func (p *fakePlugin) register(t testing.TB, tb *testBus, cfg map[string]any) schemas.RegisterResponse {
	t.Helper()
	var resp schemas.RegisterResponse
	tb.mustCall(t, schemas.APIPluginsRegister+"."+p.manifest.Name, schemas.RegisterRequest{Manifest: p.manifest, Config: cfg}, &resp)
	return resp
}

func (p *fakePlugin) lastActions() []schemas.ActionRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]schemas.ActionRequest(nil), p.actions...)
}
