package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func intp(i int) *int { return &i }

// hookPlugin starts an ACTIVE fake plugin implementing hooks with the given
// specs and answers.
func hookPlugin(t *testing.T, url string, tb *testBus, name string, priority int, specs []schemas.HookSpec,
	answers map[string]func(schemas.HookRequest) (schemas.HookResponse, error)) *fakePlugin {
	t.Helper()
	m := manifest(name, "1.0.0")
	m.Priority = priority
	m.Hooks = specs
	p := newFakePlugin(t, url, m)
	for h, a := range answers {
		p.onHook(h, a)
	}
	p.start("plugbus")
	if st := p.register(t, tb, nil).Plugin.State; st != schemas.StateActive {
		t.Fatalf("%s: state %s", name, st)
	}
	return p
}

func cont(schemas.HookRequest) (schemas.HookResponse, error) {
	return schemas.HookResponse{Outcome: schemas.HookContinue}, nil
}

func outcomes(rec schemas.ChainRecord) string {
	var parts []string
	for _, s := range rec.Steps {
		parts = append(parts, s.Plugin+":"+s.Outcome)
	}
	return strings.Join(parts, " ")
}

func TestHookOrderAndList(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	pre := schemas.HookJobPreDeploy
	ans := map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: cont}
	// Registered in an order that differs from the run order.
	hookPlugin(t, s.ClientURL(), tb, "delta", 0, []schemas.HookSpec{{Hook: pre, Priority: intp(5)}}, ans)
	hookPlugin(t, s.ClientURL(), tb, "bravo", 0, []schemas.HookSpec{{Hook: pre}}, ans)
	hookPlugin(t, s.ClientURL(), tb, "alpha", 0, []schemas.HookSpec{{Hook: pre, FailurePolicy: "ignore", Timeout: schemas.Duration(2 * time.Second)}}, ans)
	hookPlugin(t, s.ClientURL(), tb, "charlie", -1, []schemas.HookSpec{{Hook: pre}}, ans)

	var list schemas.HookListResponse
	tb.mustCall(t, schemas.APIHooksList, schemas.HookListRequest{Hook: pre}, &list)
	if len(list.Chains) != 1 {
		t.Fatalf("chains: %+v", list)
	}
	var got []string
	for _, st := range list.Chains[0].Steps {
		got = append(got, fmt.Sprintf("%s/%d/%s/%s", st.Plugin, st.Priority, st.Timeout.D(), st.FailurePolicy))
	}
	want := "charlie/-1/5s/fail alpha/0/2s/ignore bravo/0/5s/fail delta/5/5s/fail"
	if strings.Join(got, " ") != want {
		t.Fatalf("hooks ls order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "nginx"}, &jr)
	if len(jr.Chains) != 1 || outcomes(jr.Chains[0]) != "charlie:continued alpha:continued bravo:continued delta:continued" {
		t.Fatalf("run order differs from hooks ls: %+v", jr.Chains)
	}
	if jr.Chains[0].Outcome != schemas.ChainCompleted || jr.Chains[0].Object != "job/web" {
		t.Fatalf("record: %+v", jr.Chains[0])
	}

	var all schemas.HookListResponse
	tb.mustCall(t, schemas.APIHooksList, schemas.HookListRequest{}, &all)
	if len(all.Chains) != len(schemas.HookPoints) {
		t.Fatalf("hooks.list without a hook lists %d chains, want every hook point", len(all.Chains))
	}
}

func TestHookPatchRejectAndEvents(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()
	pre := schemas.HookJobPreDeploy
	var seenByStep2 schemas.JobDeployRequest
	hookPlugin(t, s.ClientURL(), tb, "labeler", 0, []schemas.HookSpec{{Hook: pre}}, map[string]func(schemas.HookRequest) (schemas.HookResponse, error){
		pre: func(schemas.HookRequest) (schemas.HookResponse, error) {
			return schemas.HookResponse{Patch: json.RawMessage(`{"labels":{"team":"web"}}`)}, nil
		},
	})
	hookPlugin(t, s.ClientURL(), tb, "policy", 1, []schemas.HookSpec{{Hook: pre}}, map[string]func(schemas.HookRequest) (schemas.HookResponse, error){
		pre: func(r schemas.HookRequest) (schemas.HookResponse, error) {
			var job schemas.JobDeployRequest
			_ = json.Unmarshal(r.Payload, &job)
			if job.Name == "web" {
				seenByStep2 = job
			}
			if strings.HasPrefix(job.Image, "docker.io/") {
				return schemas.HookResponse{Outcome: schemas.HookReject, Reason: "image " + job.Image + " is not allowed"}, nil
			}
			return schemas.HookResponse{}, nil
		},
	})

	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "registry.internal/web:1"}, &jr)
	if seenByStep2.Labels["team"] != "web" {
		t.Fatalf("step 2 did not see step 1's change: %+v", seenByStep2)
	}
	if jr.Job.Labels["team"] != "web" || outcomes(jr.Chains[0]) != "labeler:patched policy:continued" {
		t.Fatalf("deploy: %+v %s", jr.Job, outcomes(jr.Chains[0]))
	}

	err := tb.call(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "evil", Version: "1", Image: "docker.io/evil:latest"}, nil)
	e := wantCode(t, err, schemas.CodeRejected, "")
	if e.Plugin != "policy" || e.Message != "image docker.io/evil:latest is not allowed" {
		t.Fatalf("rejection: %+v", e)
	}
	if e.Details["chain"] == nil {
		t.Fatalf("rejection carries no chain record: %+v", e.Details)
	}
	err = tb.call(t, schemas.APIJobsGet, schemas.JobRef{Name: "evil", Version: "1"}, nil)
	wantCode(t, err, schemas.CodeNotFound, "")

	// Events: one deployed (web), chain_completed for both runs, no deployed for evil.
	stream, _ := tb.js.Stream(ctx, schemas.StreamEvents)
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"plugbus.evt.job.>", "plugbus.evt.hook.>"}})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	var deployed schemas.JobDeployedData
	for len(types) < 3 {
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(mctx))
		cancel()
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		ev, err := wire.DecodeEvent(ctx, natsMsgFrom(msg))
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type())
		if ev.Type() == schemas.TypeJobDeployed {
			_ = ev.DataAs(&deployed)
		}
		if err := schemas.Validate(schemas.EventSchemaPath(ev.Type()), ev.Data()); err != nil {
			t.Fatalf("%s fails its schema: %v", ev.Type(), err)
		}
	}
	want := []string{schemas.TypeHookChainCompleted, schemas.TypeJobDeployed, schemas.TypeHookChainCompleted}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", types, want)
	}
	if len(deployed.ChainIDs) != 1 || deployed.ChainIDs[0] != jr.Chains[0].ID || deployed.Labels["team"] != "web" {
		t.Fatalf("deployed event does not carry the chain outcome: %+v", deployed)
	}
	mctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	msg, err := cons.Next(jetstream.FetchContext(mctx))
	cancel()
	if err == nil {
		t.Fatalf("unexpected extra event %s", msg.Subject())
	}
}

func TestHookTimeoutPolicies(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	pre := schemas.HookJobPreDeploy
	hang := make(chan struct{})
	defer close(hang)
	hanging := func(schemas.HookRequest) (schemas.HookResponse, error) {
		<-hang
		return schemas.HookResponse{}, nil
	}
	timeout := schemas.Duration(200 * time.Millisecond)
	hookPlugin(t, s.ClientURL(), tb, "slow-ignored", 0, []schemas.HookSpec{{Hook: pre, Timeout: timeout, FailurePolicy: "ignore"}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: hanging})
	after := hookPlugin(t, s.ClientURL(), tb, "after", 1, []schemas.HookSpec{{Hook: pre}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: cont})

	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "a", Version: "1", Image: "x"}, &jr)
	rec := jr.Chains[0]
	if outcomes(rec) != "slow-ignored:ignored after:continued" || rec.Steps[0].Error == nil || rec.Steps[0].Error.Code != schemas.CodeTimeout {
		t.Fatalf("ignore policy: %s %+v", outcomes(rec), rec.Steps[0].Error)
	}
	if len(after.hookCalls()) != 1 {
		t.Fatal("the step after an ignored timeout did not run")
	}

	hookPlugin(t, s.ClientURL(), tb, "slow-fatal", 0, []schemas.HookSpec{{Hook: pre, Timeout: timeout, FailurePolicy: "fail", Priority: intp(-5)}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: hanging})
	err := tb.call(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "b", Version: "1", Image: "x"}, nil)
	e := wantCode(t, err, schemas.CodeTimeout, "")
	if e.Plugin != "slow-fatal" || !strings.Contains(e.Message, "slow-fatal") {
		t.Fatalf("the error must name the plugin: %+v", e)
	}
	raw, _ := json.Marshal(e.Details["chain"])
	var failed schemas.ChainRecord
	_ = json.Unmarshal(raw, &failed)
	if outcomes(failed) != "slow-fatal:failed slow-ignored:not_reached after:not_reached" || failed.Outcome != schemas.ChainFailed {
		t.Fatalf("fail policy record: %s %s", outcomes(failed), failed.Outcome)
	}
}

func TestHookNoResponderAndStaleMidChain(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), HeartbeatInterval: 50 * time.Millisecond})
	pre := schemas.HookJobPreDeploy

	// "mute" declares the hook but answers nothing on it: no responder.
	hookPlugin(t, s.ClientURL(), tb, "mute", 5, []schemas.HookSpec{{Hook: pre, FailurePolicy: "ignore"}}, nil)
	// "victim" goes STALE while the chain runs: "killer" (step 1) stops it
	// and waits for the broker to notice before answering.
	victim := hookPlugin(t, s.ClientURL(), tb, "victim", 2, []schemas.HookSpec{{Hook: pre, WhenInactive: schemas.WhenInactiveSkip}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: cont})
	hookPlugin(t, s.ClientURL(), tb, "killer", 1, []schemas.HookSpec{{Hook: pre}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: func(schemas.HookRequest) (schemas.HookResponse, error) {
			victim.stopService()
			waitFor(t, "victim STALE", func() bool { return tb.b.reg.state("victim") == schemas.StateStale })
			return schemas.HookResponse{}, nil
		}})

	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "a", Version: "1", Image: "x"}, &jr)
	rec := jr.Chains[0]
	if outcomes(rec) != "killer:continued victim:skipped mute:ignored" {
		t.Fatalf("record %s", outcomes(rec))
	}
	if rec.Steps[1].Error.Code != schemas.CodeNotActive || rec.Steps[2].Error.Code != schemas.CodeNoResponders {
		t.Fatalf("step errors: %+v %+v", rec.Steps[1].Error, rec.Steps[2].Error)
	}
}

// A gate with the fail policy whose plugin is not ACTIVE refuses the
// operation, naming the plugin, and nothing is stored.
func TestGateFailsClosed(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), HeartbeatInterval: 50 * time.Millisecond})
	pre := schemas.HookJobPreDeploy
	gate := hookPlugin(t, s.ClientURL(), tb, "gate", 0, []schemas.HookSpec{{Hook: pre, FailurePolicy: "fail"}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: cont})
	var hl schemas.HookListResponse
	tb.mustCall(t, schemas.APIHooksList, schemas.HookListRequest{Hook: pre}, &hl)
	if w := hl.Chains[0].Steps[0].WhenInactive; w != schemas.WhenInactiveFail {
		t.Fatalf("hooks.list shows when_inactive %q, want the fail policy's default, fail", w)
	}
	gate.stopService()
	waitFor(t, "gate STALE", func() bool { return tb.b.reg.state("gate") == schemas.StateStale })

	err := tb.call(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "x"}, nil)
	e := wantCode(t, err, schemas.CodeNotActive, "")
	if e.Plugin != "gate" || !strings.Contains(e.Message, "plugin gate is STALE") {
		t.Fatalf("the refusal must name the gate: %+v", e)
	}
	if err := tb.call(t, schemas.APIJobsGet, schemas.JobRef{Name: "web", Version: "1"}, nil); !errors.Is(err, schemas.ErrNotFound) {
		t.Fatalf("a refused deploy stored the job: %v", err)
	}
}

func TestRuntimeEnvMergeAndInjections(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	env := schemas.HookJobRuntimeEnv
	df := schemas.HookJobDockerfileInjection
	envAnswer := func(vars map[string]string) func(schemas.HookRequest) (schemas.HookResponse, error) {
		return func(schemas.HookRequest) (schemas.HookResponse, error) { return schemas.HookResponse{Env: vars}, nil }
	}
	frag := func(f string) func(schemas.HookRequest) (schemas.HookResponse, error) {
		return func(schemas.HookRequest) (schemas.HookResponse, error) { return schemas.HookResponse{Fragment: f}, nil }
	}
	hookPlugin(t, s.ClientURL(), tb, "first", 0, []schemas.HookSpec{{Hook: env}, {Hook: df}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){env: envAnswer(map[string]string{"REGION": "eu", "TIER": "1"}), df: frag("RUN echo first")})
	hookPlugin(t, s.ClientURL(), tb, "second", 1, []schemas.HookSpec{{Hook: env}, {Hook: df}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){env: envAnswer(map[string]string{"REGION": "us"}), df: frag("RUN echo second\n")})

	// Two plugins set REGION: an error naming both.
	err := tb.call(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "a", Version: "1", Image: "x"}, nil)
	e := wantCode(t, err, schemas.CodeConflict, "env.REGION")
	if !strings.Contains(e.Message, "first") || !strings.Contains(e.Message, "second") {
		t.Fatalf("conflict must name both plugins: %s", e.Message)
	}
	// A bad env var name from a plugin fails its step (policy ignore: recorded).
	hookPlugin(t, s.ClientURL(), tb, "badkey", 9, []schemas.HookSpec{{Hook: env}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){env: envAnswer(map[string]string{"1BAD": "x"})})
	// A key the request sets and a plugin sets is a conflict too.
	hookPlugin(t, s.ClientURL(), tb, "second", 1, []schemas.HookSpec{{Hook: env, Override: true}, {Hook: df}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){env: envAnswer(map[string]string{"REGION": "us"}), df: frag("RUN echo second\n")})
	waitFor(t, "override in the chain", func() bool {
		for _, st := range tb.b.reg.chains()[env] {
			if st.Plugin == "second" && st.Override {
				return true
			}
		}
		return false
	})
	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "a", Version: "1", Image: "x", Env: map[string]string{"APP": "web"}}, &jr)
	if got := jr.Job.Env; got["REGION"] != "us" || got["TIER"] != "1" || got["APP"] != "web" || len(got) != 3 {
		t.Fatalf("merged env %v", got)
	}
	wantDF := "# --- plugbus: first ---\nRUN echo first\n# --- plugbus: second ---\nRUN echo second\n"
	if jr.Job.DockerfileInjection != wantDF {
		t.Fatalf("dockerfile injection:\n%q\nwant\n%q", jr.Job.DockerfileInjection, wantDF)
	}
	if len(jr.Chains) != 2 || jr.Chains[0].Steps[0].EnvKeys == nil {
		t.Fatalf("chains: %+v", jr.Chains)
	}
	if last := jr.Chains[0].Steps[2]; last.Plugin != "badkey" || last.Outcome != schemas.StepIgnored || last.Error.Field != "env.1BAD" {
		t.Fatalf("bad env name step: %+v", last)
	}
}

func TestGateHooksOnDeleteActionAlert(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	inc := newFakePlugin(t, s.ClientURL(), actionManifest("inc", schemas.ActionSpec{Command: "increment", Model: "machines", OptionalParams: []string{"step"}}))
	inc.result = "ok"
	inc.start("plugbus")
	inc.register(t, tb, nil)
	gate := hookPlugin(t, s.ClientURL(), tb, "gate", 0, []schemas.HookSpec{
		{Hook: schemas.HookJobPreDelete}, {Hook: schemas.HookMachinePreAction}, {Hook: schemas.HookAlertPreNotify},
	}, map[string]func(schemas.HookRequest) (schemas.HookResponse, error){
		schemas.HookJobPreDelete: func(r schemas.HookRequest) (schemas.HookResponse, error) {
			return schemas.HookResponse{Outcome: schemas.HookReject, Reason: "protected job", Code: schemas.CodeConflict}, nil
		},
		schemas.HookMachinePreAction: func(r schemas.HookRequest) (schemas.HookResponse, error) {
			return schemas.HookResponse{Patch: json.RawMessage(`{"params":{"step":10}}`)}, nil
		},
		schemas.HookAlertPreNotify: func(r schemas.HookRequest) (schemas.HookResponse, error) {
			var a schemas.AlertFireRequest
			_ = json.Unmarshal(r.Payload, &a)
			if a.Severity == "info" {
				return schemas.HookResponse{Outcome: schemas.HookReject, Reason: "info alerts are muted"}, nil
			}
			return schemas.HookResponse{Patch: json.RawMessage(`{"labels":{"routed":"oncall"}}`)}, nil
		},
	})
	_ = gate

	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "keep", Version: "1", Image: "x"}, nil)
	err := tb.call(t, schemas.APIJobsDelete, schemas.JobRef{Name: "keep", Version: "1"}, nil)
	if e := wantCode(t, err, schemas.CodeConflict, ""); e.Plugin != "gate" || e.Message != "protected job" {
		t.Fatalf("pre_delete rejection: %+v", e)
	}
	var job schemas.Job
	tb.mustCall(t, schemas.APIJobsGet, schemas.JobRef{Name: "keep", Version: "1"}, &job)
	if job.Status != schemas.JobDeployed {
		t.Fatalf("rejected delete changed the job: %+v", job)
	}

	var ar schemas.MachineActionResponse
	tb.mustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "increment", Params: map[string]any{"step": 1}}, &ar)
	if got := inc.lastActions(); len(got) != 1 || got[0].Params["step"] != float64(10) {
		t.Fatalf("pre_action patch not applied: %+v", got)
	}
	if len(ar.Chains) != 1 || ar.Chains[0].Hook != schemas.HookMachinePreAction {
		t.Fatalf("action chains: %+v", ar.Chains)
	}

	var fired, muted schemas.AlertResponse
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "critical", Summary: "disk"}, &fired)
	if fired.EventID == "" || fired.Alert.Labels["routed"] != "oncall" || fired.Alert.Status != schemas.AlertFiring {
		t.Fatalf("fired: %+v", fired)
	}
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "fyi"}, &muted)
	if muted.EventID != "" || muted.Alert.Status != schemas.AlertSuppressed || muted.Chains[0].Outcome != schemas.ChainRejected {
		t.Fatalf("suppressed: %+v", muted)
	}
	err = tb.call(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: muted.Alert.ID}, nil)
	wantCode(t, err, schemas.CodeConflict, "")
}

// TestChainSequencingPerObject: chain runs for one job run one at a time in
// arrival order; another job's runs go on meanwhile.
func TestChainSequencingPerObject(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	pre := schemas.HookJobPreDeploy
	var mu sync.Mutex
	var log []string
	active := map[string]int{}
	release := make(chan struct{})
	entered := make(chan string, 100)
	hookPlugin(t, s.ClientURL(), tb, "recorder", 0, []schemas.HookSpec{{Hook: pre, Timeout: schemas.Duration(30 * time.Second)}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: func(r schemas.HookRequest) (schemas.HookResponse, error) {
			var job schemas.JobDeployRequest
			_ = json.Unmarshal(r.Payload, &job)
			id := job.Name + job.Version
			mu.Lock()
			active[job.Name]++
			if active[job.Name] > 1 {
				t.Errorf("two chains for job %s at once", job.Name)
			}
			log = append(log, "enter "+id)
			mu.Unlock()
			entered <- id
			if id == "x1" {
				<-release
			}
			mu.Lock()
			active[job.Name]--
			log = append(log, "exit "+id)
			mu.Unlock()
			return schemas.HookResponse{}, nil
		}})

	deploy := func(name, version string) <-chan error {
		ch := make(chan error, 1)
		// Each request is published before the next (one connection, in order).
		msg, err := json.Marshal(schemas.JobDeployRequest{Name: name, Version: version, Image: "x"})
		if err != nil {
			t.Fatal(err)
		}
		inbox := tb.nc.NewRespInbox()
		sub, err := tb.nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.nc.PublishRequest(wire.APISubject("plugbus", schemas.APIJobsDeploy), inbox, msg); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := sub.NextMsg(30 * time.Second)
			ch <- err
		}()
		return ch
	}
	x1 := deploy("x", "1")
	if got := <-entered; got != "x1" {
		t.Fatalf("first entered %s", got)
	}
	var xs []<-chan error
	for v := 2; v <= 5; v++ {
		xs = append(xs, deploy("x", fmt.Sprint(v)))
	}
	y := deploy("y", "1")
	// y runs while x1 is still held: different objects are concurrent.
	if got := <-entered; got != "y1" {
		t.Fatalf("while x1 holds job x, %s entered (want y1)", got)
	}
	if err := <-y; err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-x1; err != nil {
		t.Fatal(err)
	}
	for _, ch := range xs {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var xlog []string
	for _, l := range log {
		if strings.HasSuffix(l, " y1") {
			continue
		}
		xlog = append(xlog, l)
	}
	want := "enter x1,exit x1,enter x2,exit x2,enter x3,exit x3,enter x4,exit x4,enter x5,exit x5"
	if strings.Join(xlog, ",") != want {
		t.Fatalf("job x chain runs:\n got %s\nwant %s", strings.Join(xlog, ","), want)
	}
}
