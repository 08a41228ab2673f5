package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// continueReply is a hook step's answer that lets the chain go on unchanged.
var continueReply = mustJSON(schemas.HookResponse{Outcome: schemas.HookContinue})

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// startFakePlugin adds a plugin instance that speaks the control protocol
// directly with NATS micro, as any non-Go plugin would: init, config and
// verify succeed, and every hook the manifest declares answers
// hookReply as it is (no decoding). It is the minimum a plugin must do, so
// what a chain of them costs is what plugbus adds.
func startFakePlugin(nc *nats.Conn, prefix string, m schemas.Manifest, hookReply []byte) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{Name: wire.PluginService(m.Name), Version: m.Version})
	if err != nil {
		return nil, err
	}
	fixed := func(body []byte) micro.HandlerFunc {
		return func(r micro.Request) { _ = r.Respond(body) }
	}
	eps := []struct {
		name, subject string
		h             micro.HandlerFunc
	}{
		{schemas.VerbInit, wire.PluginSubject(prefix, m.Name, schemas.VerbInit), fixed(mustJSON(schemas.InitResponse{}))},
		{schemas.VerbConfig, wire.PluginSubject(prefix, m.Name, schemas.VerbConfig), fixed(mustJSON(schemas.ConfigResponse{}))},
		{schemas.VerbVerify, wire.PluginSubject(prefix, m.Name, schemas.VerbVerify), fixed(mustJSON(schemas.VerifyResponse{Ready: true}))},
	}
	if len(m.Actions) > 0 {
		eps = append(eps, struct {
			name, subject string
			h             micro.HandlerFunc
		}{schemas.VerbAction, wire.PluginSubject(prefix, m.Name, schemas.VerbAction), fixed(mustJSON(schemas.ActionResponse{Result: json.RawMessage(`{"ok":true}`)}))})
	}
	for _, h := range m.Hooks {
		eps = append(eps, struct {
			name, subject string
			h             micro.HandlerFunc
		}{"hook_" + strings.ReplaceAll(h.Hook, ".", "_"), wire.HookSubject(prefix, h.Hook, m.Name), fixed(hookReply)})
	}
	for _, ep := range eps {
		if err := svc.AddEndpoint(ep.name, ep.h, micro.WithEndpointSubject(ep.subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("plugin %s endpoint %s: %w", m.Name, ep.name, err)
		}
	}
	return svc, nil
}

// actionManifest is a plugin offering the action "noop" on machines.
func actionManifest(name string) schemas.Manifest {
	return schemas.Manifest{Name: name, Version: "1.0.0", Description: "busbench action",
		Actions: []schemas.ActionSpec{{Command: "noop", Model: "machines"}}}
}

// register registers m through the broker API and checks it became ACTIVE.
func register(ctx context.Context, nc *nats.Conn, prefix string, m schemas.Manifest) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	var resp schemas.RegisterResponse
	if err := wire.Call(cctx, nc, wire.PluginAPISubject(prefix, schemas.APIPluginsRegister, m.Name), schemas.RegisterRequest{Manifest: m}, &resp); err != nil {
		return 0, fmt.Errorf("register %s: %w", m.Name, err)
	}
	took := time.Since(start)
	if resp.Plugin.State != schemas.StateActive {
		return took, fmt.Errorf("register %s: state %s (%v)", m.Name, resp.Plugin.State, resp.Plugin.LastError)
	}
	return took, nil
}

// call is an API call with a bounded wait.
func call(ctx context.Context, nc *nats.Conn, prefix, endpoint string, req, resp any) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return wire.Call(cctx, nc, wire.APISubject(prefix, endpoint), req, resp)
}
