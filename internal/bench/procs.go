package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/hostd/supervisor"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// This file runs plugins as separate processes, started the way hostd
// starts them: hostd's own supervisor runs `BINARY listen` with $NATS_URL,
// $NATS_CREDS (the plugin's own credentials, issued by the broker),
// $PLUGBUS_PREFIX and $PLUGBUS_INSTANCE. The binary is busbench itself
// (or bench/peers' peerbench): with $BUSBENCH_PLUGIN set it is a plugin
// built with sdk.Main; with $BUSBENCH_RAW set it is a bare nats.go
// responder doing the same work, the raw baseline.

// Environment variables that turn the benchmark binary into a child.
const (
	// EnvChildPlugin makes the binary an SDK plugin: "hook:NAME:PRIORITY"
	// (a job.pre_deploy step doing StampJob) or "action:NAME" (the machines
	// action "noop").
	EnvChildPlugin = "BUSBENCH_PLUGIN"
	// EnvChildRaw makes the binary a bare NATS responder on the subject it
	// names, answering StampJob of each request body.
	EnvChildRaw = "BUSBENCH_RAW"
)

// StampInputSize is the size of the job document a topology hook step
// decodes, stamps and encodes again.
const StampInputSize = 256

// StampInput is a jobs.deploy request whose JSON encoding is
// StampInputSize bytes, with an empty "stamp" label for the steps to set.
func StampInput(version string) schemas.JobDeployRequest {
	j := schemas.JobDeployRequest{Name: "bench", Version: version, Image: "registry.example.com/bench/app:1.0.0",
		Env: map[string]string{"LOG_LEVEL": "info"}, Labels: map[string]string{"team": "bench", "stamp": "", "pad": ""}}
	b, _ := json.Marshal(j)
	if pad := StampInputSize - len(b); pad > 0 {
		j.Labels["pad"] = strings.Repeat("x", pad)
	}
	return j
}

// StampJob is the work of one hook step in the topology cases, the same
// for plugbus, raw NATS and go-plugin: decode the job, set its "stamp"
// label to by, encode it again (≈258 bytes out for a 2-byte by).
func StampJob(in []byte, by string) ([]byte, error) {
	var j schemas.JobDeployRequest
	if err := json.Unmarshal(in, &j); err != nil {
		return nil, err
	}
	if j.Labels == nil {
		j.Labels = map[string]string{}
	}
	j.Labels["stamp"] = by
	return json.Marshal(j)
}

// ChildMain runs the binary as a child plugin or raw responder when the
// environment says so, and reports whether it did (then the caller exits
// with the returned code).
func ChildMain() (code int, ok bool) {
	if spec := os.Getenv(EnvChildPlugin); spec != "" {
		return childPlugin(spec), true
	}
	if subject := os.Getenv(EnvChildRaw); subject != "" {
		return childRaw(subject), true
	}
	return 0, false
}

// childPlugin is a plugin binary built with sdk.Main, as any Go plugin is.
func childPlugin(spec string) int {
	f := strings.Split(spec, ":")
	switch {
	case len(f) == 3 && f[0] == "hook":
		prio, err := strconv.Atoi(f[2])
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: bad priority %q\n", EnvChildPlugin, f[2])
			return 2
		}
		m := schemas.Manifest{Name: f[1], Version: "1.0.0", Description: "busbench process hook step",
			Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, Priority: &prio, Timeout: schemas.Duration(5 * time.Second)}}}
		stamp := stampOf(f[1])
		sdk.Main(m, func(p *sdk.Plugin) error {
			p.HandleHook(schemas.HookJobPreDeploy, func(_ context.Context, r *sdk.HookRequest) (*schemas.HookResponse, error) {
				out, err := StampJob(r.Payload, stamp)
				if err != nil {
					return nil, err
				}
				// The stamped document as a merge patch: what a plugin that
				// rewrites the job answers.
				return &schemas.HookResponse{Outcome: schemas.HookContinue, Patch: out}, nil
			})
			return nil
		})
	case len(f) == 2 && f[0] == "action":
		sdk.Main(actionManifest(f[1]), func(p *sdk.Plugin) error {
			p.HandleAction("noop", func(context.Context, *sdk.Action) (any, error) { return map[string]bool{"ok": true}, nil })
			return nil
		})
	}
	fmt.Fprintf(os.Stderr, "%s: want hook:NAME:PRIORITY or action:NAME, got %q\n", EnvChildPlugin, spec)
	return 2
}

// stampOf is the 2-byte stamp a step named "...-NN" sets.
func stampOf(name string) string {
	if len(name) >= 2 {
		return name[len(name)-2:]
	}
	return "s" + name
}

// childRaw is the raw baseline of a plugin process: a bare nats.go
// subscriber answering StampJob of every request, on the same server with
// the same kind of credentials.
func childRaw(subject string) int {
	opts := []nats.Option{nats.Name("busbench-raw-" + subject)}
	if c := os.Getenv(wire.EnvNATSCreds); c != "" {
		opts = append(opts, nats.UserCredentials(c))
	}
	nc, err := nats.Connect(os.Getenv(wire.EnvNATSURL), opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raw responder: %v\n", err)
		return 1
	}
	defer nc.Close()
	stamp := stampOf(subject)
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		out, err := StampJob(m.Data, stamp)
		if err != nil {
			out = []byte(`{"error":"bad input"}`)
		}
		_ = m.Respond(out)
	}); err != nil {
		fmt.Fprintf(os.Stderr, "raw responder: %v\n", err)
		return 1
	}
	if err := nc.Flush(); err != nil {
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}

// procSet is a set of supervised child processes.
type procSet struct {
	cancel context.CancelFunc
	done   []chan struct{}
}

// startProc runs self as a child under hostd's supervisor with env added
// and returns at once; stop ends it.
func (ps *procSet) start(ctx context.Context, self, plugin, instance string, env []string) error {
	s, err := supervisor.New(supervisor.Spec{Plugin: plugin, Instance: instance, Binary: self, Args: []string{"listen"},
		Env: env, StopGrace: 5 * time.Second})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	ps.done = append(ps.done, done)
	return nil
}

func (ps *procSet) stop() {
	if ps.cancel != nil {
		ps.cancel()
	}
	for _, d := range ps.done {
		select {
		case <-d:
		case <-time.After(15 * time.Second):
		}
	}
	ps.done = nil
}

// pluginEnv is the environment hostd gives a plugin it starts on bus: the
// server, the prefix, the instance and the plugin's own credentials
// (issued through plugins.creds with the admin credentials, as hostd gets
// them through hosts.plugin-creds).
func pluginEnv(ctx context.Context, admin *nats.Conn, bus *Bus, dir, plugin string) ([]string, error) {
	env := []string{wire.EnvNATSURL + "=" + bus.URL, wire.EnvPrefix + "=" + bus.Prefix, wire.EnvInstance + "=0"}
	if bus.ownSrv {
		return env, nil
	}
	var resp schemas.CredsResponse
	if err := call(ctx, admin, bus.Prefix, schemas.APIPluginsCreds, schemas.CredsRequest{Name: plugin}, &resp); err != nil {
		return nil, fmt.Errorf("plugins.creds %s: %w", plugin, err)
	}
	path := dir + "/" + plugin + ".creds"
	if err := os.WriteFile(path, []byte(resp.Creds), 0o600); err != nil {
		return nil, err
	}
	return append(env, wire.EnvNATSCreds+"="+path), nil
}

// waitActive polls plugins.get until every named plugin is ACTIVE.
func waitActive(ctx context.Context, nc *nats.Conn, prefix string, names []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, name := range names {
		for {
			var rec schemas.PluginRecord
			err := call(ctx, nc, prefix, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: name}, &rec)
			if err == nil && rec.State == schemas.StateActive {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("plugin %s not ACTIVE within %s (%v, state %q)", name, timeout, err, rec.State)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// waitResponders sends a request to each subject until it is answered.
func waitResponders(ctx context.Context, nc *nats.Conn, subjects []string, body []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, s := range subjects {
		for {
			_, err := nc.Request(s, body, time.Second)
			if err == nil {
				break
			}
			if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("raw responder on %s not answering within %s", s, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
