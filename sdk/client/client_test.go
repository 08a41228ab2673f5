package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// startServer runs an in-process nats-server on a random local port and
// returns a connection to it.
func startServer(t *testing.T) *nats.Conn {
	t.Helper()
	return testnats.Connect(t, testnats.Start(t, false).ClientURL())
}

// fakeBroker answers every broker API endpoint under prefix with whatever
// reply is set for it and records the last request body per endpoint.
type fakeBroker struct {
	mu      sync.Mutex
	replies map[string]func(req *wire.Request)
	got     map[string][]byte
}

var allEndpoints = []string{
	schemas.APIPluginsRegister, schemas.APIPluginsList, schemas.APIPluginsGet, schemas.APIPluginsConfig, schemas.APIPluginsUnregister,
	schemas.APIJobsDeploy, schemas.APIJobsDelete, schemas.APIJobsList, schemas.APIJobsGet,
	schemas.APIMachinesAction, schemas.APIMachinesGet, schemas.APIMachinesList, schemas.APIMachinesSetParam,
	schemas.APIAlertsFire, schemas.APIAlertsResolve, schemas.APIHooksList,
	schemas.APIHostsList, schemas.APIHostsGet, schemas.APIPluginsEnable, schemas.APIPluginsDisable, schemas.APIPluginsRestart,
}

func newFakeBroker(t *testing.T, nc *nats.Conn, prefix string) *fakeBroker {
	t.Helper()
	fb := &fakeBroker{replies: map[string]func(*wire.Request){}, got: map[string][]byte{}}
	svc, err := wire.NewService(nc, wire.Config{Name: "fake-broker", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	for _, ep := range allEndpoints {
		ep := ep
		name := strings.NewReplacer(".", "_").Replace(ep)
		err := svc.AddEndpoint(wire.Endpoint{Name: name, Concurrency: 16, Handler: func(_ context.Context, req *wire.Request) {
			fb.mu.Lock()
			fb.got[ep] = append([]byte(nil), req.Data()...)
			reply := fb.replies[ep]
			fb.mu.Unlock()
			if reply == nil {
				_ = req.Reply(nil, schemas.Errorf(schemas.CodeInternal, "", "no reply set for %s", ep))
				return
			}
			reply(req)
		}, Subject: scopedSubject(prefix, ep)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The subscriptions must reach the server before another connection
	// sends requests.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return fb
}

func (fb *fakeBroker) reply(endpoint string, resp any) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.replies[endpoint] = func(req *wire.Request) { _ = req.Reply(resp, nil) }
}

func (fb *fakeBroker) fail(endpoint string, e *schemas.Error) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.replies[endpoint] = func(req *wire.Request) { _ = req.Reply(nil, e) }
}

func (fb *fakeBroker) request(t *testing.T, endpoint string) map[string]any {
	t.Helper()
	fb.mu.Lock()
	defer fb.mu.Unlock()
	body, ok := fb.got[endpoint]
	if !ok {
		t.Fatalf("no request received on %s", endpoint)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("request on %s is not a JSON object: %v: %s", endpoint, err, body)
	}
	return m
}

// jsonMap round-trips v through JSON so it compares with a decoded request.
func jsonMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEndpoints(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	c := client.New(nc)
	ctx := context.Background()

	when := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	plugin := schemas.PluginRecord{Name: "incrementer", Version: "1.0.0", State: schemas.StateActive,
		Manifest: schemas.Manifest{Name: "incrementer", Version: "1.0.0"}, Config: map[string]any{"step": 2.0},
		RegisteredAt: when, UpdatedAt: when}
	job := schemas.Job{Name: "web", Version: "1.2.0", Image: "nginx:1.27", Env: map[string]string{"A": "1"},
		Status: schemas.JobDeployed, DeployedAt: when}
	machine := schemas.Machine{Name: "m1", Params: map[string]any{"incrementer/touched": 3.0}, UpdatedAt: when}
	alert := schemas.Alert{ID: "a1", Severity: "critical", Summary: "disk full", Status: schemas.AlertFiring, FiredAt: when}
	chains := schemas.HookListResponse{Chains: []schemas.HookChain{
		{Hook: schemas.HookJobPreDeploy, Steps: []schemas.HookStep{
			{Plugin: "job-policy", Version: "1.0.0", Priority: 10, Timeout: schemas.Duration(2 * time.Second),
				FailurePolicy: schemas.FailurePolicyFail, State: schemas.StateActive},
			{Plugin: "audit", Version: "0.1.0", Priority: 50, Timeout: schemas.Duration(schemas.DefaultHookTimeout),
				FailurePolicy: schemas.FailurePolicyIgnore, State: schemas.StateError},
		}},
	}}
	started := when.Add(time.Second)
	code := 1
	host := schemas.Host{Name: "laptop", Labels: map[string]string{"os": "linux"}, HostdVersion: "0.3.0",
		State: schemas.HostUp, StartedAt: when, HeartbeatAt: when.Add(30 * time.Second),
		HeartbeatInterval: schemas.Duration(5 * time.Second), Plugins: []schemas.PluginInstance{
			{Plugin: "incrementer", Instance: "0", State: schemas.InstanceRunning, Binary: "bin/incrementer",
				Version: "1.0.0", PID: 4242, Restarts: 1, StartedAt: &started,
				LastExit: &schemas.InstanceExit{Cause: "exited", Code: &code, Time: when, Reason: "exited with code 1"}},
			{Plugin: "notify-webhook", Instance: "-", State: schemas.InstanceDisabled, Reason: "disabled in the config file"},
		}}
	off, on := false, true
	disabled := schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "laptop", Plugin: "incrementer", Enabled: &off, UpdatedAt: when}}}
	enabled := schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "laptop", Plugin: "incrementer", Enabled: &on, UpdatedAt: when}}}
	restarted := schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "laptop", Plugin: "incrementer", Restart: "r1", UpdatedAt: when}}}

	tests := []struct {
		name     string
		endpoint string
		reply    any
		call     func() (any, error)
		wantReq  any
		wantResp any
	}{
		{"Register", schemas.APIPluginsRegister, schemas.RegisterResponse{Plugin: plugin, Changed: true},
			func() (any, error) {
				return c.Register(ctx, schemas.RegisterRequest{Manifest: plugin.Manifest, InstanceID: "i1"})
			},
			schemas.RegisterRequest{Manifest: plugin.Manifest, InstanceID: "i1"},
			&schemas.RegisterResponse{Plugin: plugin, Changed: true}},
		{"ListPlugins", schemas.APIPluginsList, schemas.PluginListResponse{Plugins: []schemas.PluginRecord{plugin}},
			func() (any, error) { return c.ListPlugins(ctx, schemas.StateActive) },
			schemas.PluginListRequest{State: schemas.StateActive},
			[]schemas.PluginRecord{plugin}},
		{"ListPluginsPage", schemas.APIPluginsList, schemas.PluginListResponse{Plugins: []schemas.PluginRecord{plugin}, NextAfter: plugin.Name},
			func() (any, error) {
				return c.ListPluginsPage(ctx, schemas.PluginListRequest{Limit: 1, After: "alpha"})
			},
			schemas.PluginListRequest{Limit: 1, After: "alpha"},
			&schemas.PluginListResponse{Plugins: []schemas.PluginRecord{plugin}, NextAfter: plugin.Name}},
		{"GetPlugin", schemas.APIPluginsGet, plugin,
			func() (any, error) { return c.GetPlugin(ctx, "incrementer") },
			schemas.PluginGetRequest{Name: "incrementer"}, &plugin},
		{"UnregisterPlugin", schemas.APIPluginsUnregister, plugin,
			func() (any, error) { return c.UnregisterPlugin(ctx, "incrementer", true) },
			schemas.PluginUnregisterRequest{Name: "incrementer", Force: true}, &plugin},
		{"ConfigPlugin", schemas.APIPluginsConfig, plugin,
			func() (any, error) { return c.ConfigPlugin(ctx, "incrementer", map[string]any{"step": 2}) },
			schemas.PluginConfigRequest{Name: "incrementer", Set: map[string]any{"step": 2}}, &plugin},
		{"DeployJob", schemas.APIJobsDeploy, schemas.JobResponse{Job: job, EventID: "e1"},
			func() (any, error) {
				return c.DeployJob(ctx, schemas.JobDeployRequest{Name: "web", Version: "1.2.0", Image: "nginx:1.27",
					Env: map[string]string{"A": "1"}})
			},
			schemas.JobDeployRequest{Name: "web", Version: "1.2.0", Image: "nginx:1.27", Env: map[string]string{"A": "1"}},
			&schemas.JobResponse{Job: job, EventID: "e1"}},
		{"DeleteJob", schemas.APIJobsDelete, schemas.JobResponse{Job: job, EventID: "e2"},
			func() (any, error) { return c.DeleteJob(ctx, "web", "1.2.0") },
			schemas.JobRef{Name: "web", Version: "1.2.0"}, &schemas.JobResponse{Job: job, EventID: "e2"}},
		{"ListJobs", schemas.APIJobsList, schemas.JobListResponse{Jobs: []schemas.Job{job}},
			func() (any, error) { return c.ListJobs(ctx) },
			schemas.JobListRequest{}, []schemas.Job{job}},
		{"GetJob", schemas.APIJobsGet, job,
			func() (any, error) { return c.GetJob(ctx, "web", "1.2.0") },
			schemas.JobRef{Name: "web", Version: "1.2.0"}, &job},
		{"MachineAction", schemas.APIMachinesAction,
			schemas.MachineActionResponse{ActionID: "x", Machine: "m1", Command: "increment", Plugin: "incrementer",
				Result: json.RawMessage(`{"value":4}`)},
			func() (any, error) {
				return c.MachineAction(ctx, schemas.MachineActionRequest{Machine: "m1", Command: "increment",
					Params: map[string]any{"incrementer/step": 1}, Plugin: "incrementer"})
			},
			schemas.MachineActionRequest{Machine: "m1", Command: "increment",
				Params: map[string]any{"incrementer/step": 1}, Plugin: "incrementer"},
			&schemas.MachineActionResponse{ActionID: "x", Machine: "m1", Command: "increment", Plugin: "incrementer",
				Result: json.RawMessage(`{"value":4}`)}},
		{"GetMachine", schemas.APIMachinesGet, machine,
			func() (any, error) { return c.GetMachine(ctx, "m1") },
			schemas.MachineRef{Name: "m1"}, &machine},
		{"ListMachines", schemas.APIMachinesList, schemas.MachineListResponse{Machines: []schemas.Machine{machine}},
			func() (any, error) { return c.ListMachines(ctx) },
			schemas.MachineListRequest{}, []schemas.Machine{machine}},
		{"SetMachineParam", schemas.APIMachinesSetParam, machine,
			func() (any, error) { return c.SetMachineParam(ctx, "m1", "incrementer/touched", 3) },
			schemas.MachineSetParamRequest{Machine: "m1", Param: "incrementer/touched", Value: 3}, &machine},
		{"FireAlert", schemas.APIAlertsFire, schemas.AlertResponse{Alert: alert, EventID: "e3"},
			func() (any, error) {
				return c.FireAlert(ctx, schemas.AlertFireRequest{Severity: "critical", Summary: "disk full",
					Labels: map[string]string{"host": "h1"}})
			},
			schemas.AlertFireRequest{Severity: "critical", Summary: "disk full", Labels: map[string]string{"host": "h1"}},
			&schemas.AlertResponse{Alert: alert, EventID: "e3"}},
		{"ResolveAlert", schemas.APIAlertsResolve, schemas.AlertResponse{Alert: alert, EventID: "e4"},
			func() (any, error) { return c.ResolveAlert(ctx, "a1") },
			schemas.AlertRef{ID: "a1"}, &schemas.AlertResponse{Alert: alert, EventID: "e4"}},
		{"HooksList", schemas.APIHooksList, chains,
			func() (any, error) { return c.HooksList(ctx, schemas.HookJobPreDeploy) },
			schemas.HookListRequest{Hook: schemas.HookJobPreDeploy}, &chains},
		{"ListHosts", schemas.APIHostsList, schemas.HostListResponse{Hosts: []schemas.Host{host}},
			func() (any, error) { return c.ListHosts(ctx, schemas.HostUp) },
			schemas.HostListRequest{State: schemas.HostUp}, []schemas.Host{host}},
		{"GetHost", schemas.APIHostsGet, host,
			func() (any, error) { return c.GetHost(ctx, "laptop") },
			schemas.HostRef{Name: "laptop"}, &host},
		{"EnablePlugin", schemas.APIPluginsEnable, enabled,
			func() (any, error) { return c.EnablePlugin(ctx, "incrementer", "laptop") },
			schemas.PluginHostRequest{Name: "incrementer", Host: "laptop"}, &enabled},
		{"DisablePlugin", schemas.APIPluginsDisable, disabled,
			func() (any, error) { return c.DisablePlugin(ctx, "incrementer", "laptop") },
			schemas.PluginHostRequest{Name: "incrementer", Host: "laptop"}, &disabled},
		{"RestartPlugin", schemas.APIPluginsRestart, restarted,
			func() (any, error) { return c.RestartPlugin(ctx, "incrementer", "laptop") },
			schemas.PluginHostRequest{Name: "incrementer", Host: "laptop"}, &restarted},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen[tt.endpoint] = true
			fb.reply(tt.endpoint, tt.reply)
			got, err := tt.call()
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if req := fb.request(t, tt.endpoint); !reflect.DeepEqual(req, jsonMap(t, tt.wantReq)) {
				t.Errorf("request on %s = %v, want %v", tt.endpoint, req, jsonMap(t, tt.wantReq))
			}
			if !reflect.DeepEqual(got, tt.wantResp) {
				t.Errorf("reply = %#v, want %#v", got, tt.wantResp)
			}
		})
	}
	for _, ep := range allEndpoints {
		if !seen[ep] {
			t.Errorf("endpoint %s has no test case", ep)
		}
	}
}

func TestErrorReply(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	c := client.New(nc)
	fb.fail(schemas.APIMachinesAction, &schemas.Error{Code: schemas.CodeMissingParam,
		Message: "required param incrementer/touched is missing", Field: "params.incrementer/touched",
		Plugin: "incrementer"})
	fb.fail(schemas.APIJobsGet, schemas.Errorf(schemas.CodeNotFound, "name", "job web 9.9.9 not found"))

	_, err := c.GetJob(context.Background(), "web", "9.9.9")
	if !errors.Is(err, schemas.ErrNotFound) {
		t.Fatalf("GetJob error = %v, want errors.Is ErrNotFound", err)
	}
	if errors.Is(err, schemas.ErrConflict) {
		t.Errorf("not_found error matches ErrConflict too")
	}

	_, err = c.MachineAction(context.Background(), schemas.MachineActionRequest{Machine: "m1", Command: "increment"})
	var e *schemas.Error
	if !errors.As(err, &e) {
		t.Fatalf("MachineAction error %T %v is not a *schemas.Error", err, err)
	}
	want := schemas.Error{Code: schemas.CodeMissingParam, Message: "required param incrementer/touched is missing",
		Field: "params.incrementer/touched", Plugin: "incrementer"}
	if !reflect.DeepEqual(*e, want) {
		t.Errorf("error = %#v, want %#v", *e, want)
	}
}

// ListPlugins follows plugins.list's pages to the last, asking each for
// what comes after the previous one, with the state filter on every page.
func TestListPluginsFollowsPages(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	var asked []schemas.PluginListRequest
	fb.mu.Lock()
	fb.replies[schemas.APIPluginsList] = func(req *wire.Request) {
		var r schemas.PluginListRequest
		_ = json.Unmarshal(req.Data(), &r)
		asked = append(asked, r)
		page := map[string]schemas.PluginListResponse{
			"":  {Plugins: []schemas.PluginRecord{{Name: "a"}, {Name: "b"}}, NextAfter: "b"},
			"b": {Plugins: []schemas.PluginRecord{{Name: "c"}}, NextAfter: "c"},
			"c": {Plugins: []schemas.PluginRecord{{Name: "d"}}},
		}[r.After]
		_ = req.Reply(page, nil)
	}
	fb.mu.Unlock()
	got, err := client.New(nc).ListPlugins(context.Background(), schemas.StateActive)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "a,b,c,d" {
		t.Fatalf("ListPlugins = %v, want a,b,c,d", names)
	}
	want := []schemas.PluginListRequest{{State: schemas.StateActive}, {State: schemas.StateActive, After: "b"}, {State: schemas.StateActive, After: "c"}}
	if !reflect.DeepEqual(asked, want) {
		t.Fatalf("requests %+v, want %+v", asked, want)
	}
}

func TestNoResponders(t *testing.T) {
	nc := startServer(t)
	newFakeBroker(t, nc, "plugbus") // answers under another prefix only
	c := client.New(nc, client.WithPrefix("elsewhere"))
	_, err := c.ListJobs(context.Background())
	if !errors.Is(err, schemas.ErrNoResponders) {
		t.Fatalf("error = %v, want ErrNoResponders", err)
	}
	if !strings.Contains(err.Error(), "elsewhere.api.jobs.list") {
		t.Errorf("error %q does not name the subject", err)
	}
}

func TestPrefixRoutesCalls(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "team-a")
	fb.reply(schemas.APIJobsList, schemas.JobListResponse{Jobs: []schemas.Job{{Name: "x"}}})
	jobs, err := client.New(nc, client.WithPrefix("team-a")).ListJobs(context.Background())
	if err != nil || len(jobs) != 1 || jobs[0].Name != "x" {
		t.Fatalf("ListJobs = %v, %v", jobs, err)
	}
}

func TestTimeout(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	fb.mu.Lock()
	fb.replies[schemas.APIJobsList] = func(req *wire.Request) { <-release } // never answers in time
	fb.mu.Unlock()

	t.Run("default timeout when ctx has no deadline", func(t *testing.T) {
		c := client.New(nc, client.WithTimeout(100*time.Millisecond))
		start := time.Now()
		_, err := c.ListJobs(context.Background())
		if !errors.Is(err, schemas.ErrTimeout) {
			t.Fatalf("error = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("call took %s, the 100ms timeout was not applied", d)
		}
	})
	t.Run("ctx deadline wins over the default", func(t *testing.T) {
		c := client.New(nc, client.WithTimeout(time.Hour))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.ListJobs(ctx)
		if !errors.Is(err, schemas.ErrTimeout) {
			t.Fatalf("error = %v, want ErrTimeout", err)
		}
	})
}

func TestInvalidOptions(t *testing.T) {
	nc := startServer(t)
	for name, opt := range map[string]client.Option{
		"empty prefix":     client.WithPrefix(""),
		"wildcard prefix":  client.WithPrefix("plug.*"),
		"empty token":      client.WithPrefix("plug..bus"),
		"negative timeout": client.WithTimeout(-time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := client.New(nc, opt).ListJobs(context.Background())
			if !errors.Is(err, client.ErrInvalidOption) {
				t.Fatalf("error = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func TestCallGeneric(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	fb.reply(schemas.APIMachinesGet, schemas.Machine{Name: "m1"})
	var raw json.RawMessage
	if err := client.New(nc).Call(context.Background(), schemas.APIMachinesGet, schemas.MachineRef{Name: "m1"}, &raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"name":"m1"`) {
		t.Errorf("raw reply = %s", raw)
	}
	// A nil resp discards the reply.
	if err := client.New(nc).Call(context.Background(), schemas.APIMachinesGet, schemas.MachineRef{Name: "m1"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestHooksListAll(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	fb.reply(schemas.APIHooksList, schemas.HookListResponse{Chains: []schemas.HookChain{
		{Hook: schemas.HookJobPreDeploy, Steps: []schemas.HookStep{}}}})
	res, err := client.New(nc).HooksList(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chains) != 1 || res.Chains[0].Hook != schemas.HookJobPreDeploy {
		t.Errorf("reply = %+v", res)
	}
	// No hook: the request omits it, so the broker lists every hook point.
	if req := fb.request(t, schemas.APIHooksList); len(req) != 0 {
		t.Errorf("request = %v, want {}", req)
	}
}

func TestRejection(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	chain := schemas.ChainRecord{ID: "c1", Hook: schemas.HookJobPreDeploy, Object: "job/web",
		Outcome: schemas.ChainRejected, Steps: []schemas.StepRecord{{Plugin: "job-policy",
			FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepRejected, Reason: "no"}}}
	fb.fail(schemas.APIJobsDeploy, &schemas.Error{Code: schemas.CodeRejected, Message: "no", Plugin: "job-policy",
		Details: map[string]any{"chain": chain}})
	_, err := client.New(nc).DeployJob(context.Background(), schemas.JobDeployRequest{Name: "web"})
	if !errors.Is(err, schemas.ErrRejected) {
		t.Fatalf("error = %v, want ErrRejected", err)
	}
	var e *schemas.Error
	if !errors.As(err, &e) || e.Plugin != "job-policy" || e.Details["chain"] == nil {
		t.Errorf("error = %#v, want plugin and details.chain", e)
	}
}

// TestRestartPluginEveryHost: without a host the request leaves it out,
// so the broker restarts the plugin on every host that runs it, and the
// reply lists each host asked.
func TestRestartPluginEveryHost(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	want := schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "h1", Plugin: "incrementer", Restart: "r1"}, {Host: "h2", Plugin: "incrementer", Restart: "r1"}}}
	fb.reply(schemas.APIPluginsRestart, want)
	res, err := client.New(nc).RestartPlugin(context.Background(), "incrementer", "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*res, want) {
		t.Errorf("reply = %+v, want %+v", *res, want)
	}
	if req := fb.request(t, schemas.APIPluginsRestart); !reflect.DeepEqual(req, map[string]any{"name": "incrementer"}) {
		t.Errorf("request = %v, want only the name", req)
	}
}

func TestHostNotFound(t *testing.T) {
	nc := startServer(t)
	fb := newFakeBroker(t, nc, "plugbus")
	e := schemas.Errorf(schemas.CodeNotFound, "name", `host "nope" has never reported`)
	e.Details = map[string]any{schemas.DetailKind: "host", schemas.DetailName: "nope"}
	fb.fail(schemas.APIHostsGet, e)
	fb.fail(schemas.APIPluginsDisable, e)
	c := client.New(nc)
	if _, err := c.GetHost(context.Background(), "nope"); !errors.Is(err, schemas.ErrNotFound) {
		t.Errorf("GetHost error = %v, want ErrNotFound", err)
	}
	_, err := c.DisablePlugin(context.Background(), "incrementer", "nope")
	var got *schemas.Error
	if !errors.As(err, &got) || got.Code != schemas.CodeNotFound || got.Details[schemas.DetailKind] != "host" {
		t.Errorf("DisablePlugin error = %#v, want not_found with details kind host", err)
	}
}

// scopedSubject is an endpoint's subject as the broker serves it: with a
// wildcard for the caller's name on a scoped endpoint.
func scopedSubject(prefix, endpoint string) string {
	if schemas.IsScoped(endpoint) {
		return wire.APISubject(prefix, endpoint+".*")
	}
	return wire.APISubject(prefix, endpoint)
}

// Mutating calls carry an idempotency key (a fresh one, or the caller's);
// reads carry none.
func TestIdempotencyKeys(t *testing.T) {
	nc := startServer(t)
	keys := make(chan string, 8)
	fb := newFakeBroker(t, nc, "plugbus")
	for _, ep := range []string{schemas.APIAlertsFire, schemas.APIPluginsList} {
		fb.mu.Lock()
		fb.replies[ep] = func(req *wire.Request) {
			keys <- req.Headers().Get(wire.HeaderIdempotencyKey)
			_ = req.Reply(map[string]any{}, nil)
		}
		fb.mu.Unlock()
	}
	c := client.New(nc)
	ctx := context.Background()
	if _, err := c.FireAlert(ctx, schemas.AlertFireRequest{Severity: "info", Summary: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FireAlert(ctx, schemas.AlertFireRequest{Severity: "info", Summary: "s"}); err != nil {
		t.Fatal(err)
	}
	k1, k2 := <-keys, <-keys
	if k1 == "" || k1 == k2 {
		t.Errorf("two fires got keys %q and %q: want two fresh ones", k1, k2)
	}
	if _, err := c.FireAlert(client.WithIdempotencyKey(ctx, "page/ev-1"), schemas.AlertFireRequest{Severity: "info", Summary: "s"}); err != nil {
		t.Fatal(err)
	}
	if k := <-keys; k != "page/ev-1" {
		t.Errorf("the caller's key became %q", k)
	}
	if _, err := c.ListPlugins(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if k := <-keys; k != "" {
		t.Errorf("a read carried key %q", k)
	}
}

// While nothing answers (a broker restarting), a call is retried until one
// does, within its deadline; with retrying off it fails at once.
func TestRetryWhileNothingAnswers(t *testing.T) {
	nc := startServer(t)
	c := client.New(nc, client.WithRetryFor(30*time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := c.ListPlugins(context.Background(), "")
		done <- err
	}()
	// The call is retrying: the broker comes up only now.
	waitRetrying(t, nc)
	fb := newFakeBroker(t, nc, "plugbus")
	fb.reply(schemas.APIPluginsList, schemas.PluginListResponse{})
	if err := <-done; err != nil {
		t.Fatalf("the call made before the broker came up: %v", err)
	}

	none := client.New(nc, client.WithRetryFor(0))
	if err := none.Call(context.Background(), "no.such.endpoint", struct{}{}, nil); !errors.Is(err, schemas.ErrNoResponders) {
		t.Fatalf("nothing answering, retrying off: %v", err)
	}
	if _, err := client.New(nc, client.WithRetryFor(-time.Second)).ListPlugins(context.Background(), ""); !errors.Is(err, client.ErrInvalidOption) {
		t.Fatalf("a negative retry duration: %v", err)
	}
}

// waitRetrying waits until the connection has published a second request
// (the call is in its retry loop).
func waitRetrying(t *testing.T, nc *nats.Conn) {
	t.Helper()
	start := nc.Stats().OutMsgs
	deadline := time.Now().Add(10 * time.Second)
	for nc.Stats().OutMsgs < start+2 {
		if time.Now().After(deadline) {
			t.Fatal("the call never retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
