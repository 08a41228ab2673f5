package busctl_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
)

func hookChains() schemas.HookListResponse {
	d := func(v time.Duration) schemas.Duration { return schemas.Duration(v) }
	// Steps deliberately not sorted by name or priority: busctl must keep
	// the broker's run order.
	return schemas.HookListResponse{Chains: []schemas.HookChain{
		{Hook: schemas.HookJobPreDeploy, Steps: []schemas.HookStep{
			{Plugin: "job-policy", Version: "1.0.0", Priority: 10, Timeout: d(2 * time.Second),
				FailurePolicy: schemas.FailurePolicyFail, WhenInactive: schemas.WhenInactiveSkip, State: schemas.StateActive,
				Before: []string{"audit"}, Reason: "before audit (job-policy: before audit)"},
			{Plugin: "audit", Version: "0.1.0", Priority: 10, Timeout: d(schemas.DefaultHookTimeout),
				FailurePolicy: schemas.FailurePolicyIgnore, State: schemas.StateError, Reason: "after job-policy (job-policy: before audit)"},
		}},
		{Hook: schemas.HookJobRuntimeEnv, Steps: []schemas.HookStep{
			{Plugin: "zz-env", Version: "1.0.0", Priority: -5, Timeout: d(250 * time.Millisecond),
				FailurePolicy: schemas.FailurePolicyIgnore, State: schemas.StateActive, Reason: "priority -5"},
			{Plugin: "job-policy", Version: "1.0.0", Priority: 20, Timeout: d(schemas.DefaultHookTimeout),
				FailurePolicy: schemas.FailurePolicyIgnore, Override: true, State: schemas.StateActive},
		}},
		{Hook: schemas.HookJobDockerfileInjection, Steps: []schemas.HookStep{}},
		{Hook: schemas.HookJobBootstrapInjection},
		{Hook: schemas.HookJobPreDelete, Steps: []schemas.HookStep{}},
		{Hook: schemas.HookMachinePreAction, Steps: []schemas.HookStep{}},
		{Hook: schemas.HookAlertPreNotify, Steps: []schemas.HookStep{}},
	}}
}

func TestHooksList(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	fb.reply(schemas.APIHooksList, hookChains())

	out := b.mustRun(t, "hooks", "ls")
	want := "" +
		"HOOK                      #  PLUGIN      PRIORITY  TIMEOUT  POLICY  INACTIVE  OVERRIDE  STATE   WHY\n" +
		"job.pre_deploy            1  job-policy  10        2s       fail    skip      no        ACTIVE  before audit (job-policy: before audit)\n" +
		"job.pre_deploy            2  audit       10        5s       ignore  skip      no        ERROR   after job-policy (job-policy: before audit)\n" +
		"job.runtime_env           1  zz-env      -5        250ms    ignore  skip      no        ACTIVE  priority -5\n" +
		"job.runtime_env           2  job-policy  20        5s       ignore  skip      yes       ACTIVE  -\n" +
		"job.dockerfile_injection  -  no plugin implements this hook\n" +
		"job.bootstrap_injection   -  no plugin implements this hook\n" +
		"job.pre_delete            -  no plugin implements this hook\n" +
		"machine.pre_action        -  no plugin implements this hook\n" +
		"alert.pre_notify          -  no plugin implements this hook\n"
	if out != want {
		t.Errorf("hooks ls =\n%s\nwant\n%s", out, want)
	}
	if got := string(fb.requests(schemas.APIHooksList)[0]); got != `{}` {
		t.Errorf("request = %s, want {}", got)
	}

	t.Run("one hook", func(t *testing.T) {
		fb.reply(schemas.APIHooksList, schemas.HookListResponse{Chains: []schemas.HookChain{
			{Hook: schemas.HookAlertPreNotify, Steps: []schemas.HookStep{}}}})
		out := b.mustRun(t, "hooks", "ls", schemas.HookAlertPreNotify)
		want := "HOOK              #  PLUGIN  PRIORITY  TIMEOUT  POLICY  INACTIVE  OVERRIDE  STATE  WHY\n" +
			"alert.pre_notify  -  no plugin implements this hook\n"
		if out != want {
			t.Errorf("hooks ls alert.pre_notify =\n%s\nwant\n%s", out, want)
		}
		reqs := fb.requests(schemas.APIHooksList)
		if got := string(reqs[len(reqs)-1]); got != `{"hook":"alert.pre_notify"}` {
			t.Errorf("request = %s", got)
		}
	})

	t.Run("steps after an empty chain line up", func(t *testing.T) {
		fb.reply(schemas.APIHooksList, schemas.HookListResponse{Chains: []schemas.HookChain{
			{Hook: schemas.HookJobPreDeploy, Steps: []schemas.HookStep{{Plugin: "job-policy", Priority: 0,
				Timeout: schemas.Duration(5 * time.Second), FailurePolicy: schemas.FailurePolicyFail, State: schemas.StateActive}}},
			{Hook: schemas.HookMachinePreAction},
			{Hook: schemas.HookAlertPreNotify, Steps: []schemas.HookStep{
				{Plugin: "labeler", Priority: 0, Timeout: schemas.Duration(5 * time.Second),
					FailurePolicy: schemas.FailurePolicyFail, State: schemas.StateActive},
				{Plugin: "maint-window", Priority: 10, Timeout: schemas.Duration(2 * time.Second),
					FailurePolicy: schemas.FailurePolicyFail, State: schemas.StateStale}}},
		}})
		out := b.mustRun(t, "hooks", "ls")
		want := "" +
			"HOOK                      #  PLUGIN        PRIORITY  TIMEOUT  POLICY  INACTIVE  OVERRIDE  STATE   WHY\n" +
			"job.pre_deploy            1  job-policy    0         5s       fail    fail      no        ACTIVE  -\n" +
			"job.runtime_env           -  no plugin implements this hook\n" +
			"job.dockerfile_injection  -  no plugin implements this hook\n" +
			"job.bootstrap_injection   -  no plugin implements this hook\n" +
			"job.pre_delete            -  no plugin implements this hook\n" +
			"machine.pre_action        -  no plugin implements this hook\n" +
			"alert.pre_notify          1  labeler       0         5s       fail    fail      no        ACTIVE  -\n" +
			"alert.pre_notify          2  maint-window  10        2s       fail    fail      no        STALE   -\n"
		if out != want {
			t.Errorf("hooks ls =\n%s\nwant\n%s", out, want)
		}
	})

	t.Run("hook point left out by the broker", func(t *testing.T) {
		fb.reply(schemas.APIHooksList, schemas.HookListResponse{})
		out := b.mustRun(t, "hooks", "ls", schemas.HookJobPreDelete)
		if !strings.Contains(out, "job.pre_delete  -  no plugin implements this hook") {
			t.Errorf("output:\n%s", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		fb.reply(schemas.APIHooksList, hookChains())
		out := b.mustRun(t, "-o", "json", "hooks", "ls")
		var got schemas.HookListResponse
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		want := hookChains()
		want.Chains[3].Steps = []schemas.HookStep{} // null steps print as []
		if !reflect.DeepEqual(got, want) {
			t.Errorf("-o json = %+v\nwant %+v", got, want)
		}
		for _, s := range []string{`"timeout": "250ms"`, `"failure_policy": "fail"`, `"override": true`, `"steps": []`} {
			if !strings.Contains(out, s) {
				t.Errorf("-o json lacks %s:\n%s", s, out)
			}
		}
	})
}

func TestHooksListUsage(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	for name, args := range map[string][]string{
		"unknown hook":   {"hooks", "ls", "job.post_deploy"},
		"too many hooks": {"hooks", "ls", schemas.HookJobPreDeploy, schemas.HookJobPreDelete},
	} {
		t.Run(name, func(t *testing.T) {
			r := b.busctl(t, args...)
			if r.code != busctl.ExitUsage {
				t.Errorf("exit %d, want %d", r.code, busctl.ExitUsage)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
			if !strings.Contains(r.stderr, "busctl hooks ls --help") {
				t.Errorf("stderr lacks the usage pointer:\n%s", r.stderr)
			}
		})
	}
	r := b.busctl(t, "hooks", "ls", "job.post_deploy")
	for _, s := range append([]string{`unknown hook point "job.post_deploy"`}, schemas.HookPoints...) {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	if n := len(fb.requests(schemas.APIHooksList)); n != 0 {
		t.Errorf("%d requests reached hooks.list despite usage errors", n)
	}
}

// deployChains is what the deploy of a job with two hook plugins runs.
func deployChains() []schemas.ChainRecord {
	return []schemas.ChainRecord{
		{ID: "c1", Hook: schemas.HookJobPreDeploy, Object: "job/web", Outcome: schemas.ChainCompleted, DurationMs: 1.4,
			Steps: []schemas.StepRecord{
				{Plugin: "job-policy", Priority: 10, FailurePolicy: "fail", Outcome: schemas.StepContinued, DurationMs: 1.2},
			}},
		{ID: "c2", Hook: schemas.HookJobRuntimeEnv, Object: "job/web", Outcome: schemas.ChainCompleted, DurationMs: 5001,
			Steps: []schemas.StepRecord{
				{Plugin: "job-policy", Priority: 10, FailurePolicy: "ignore", Outcome: schemas.StepContinued, DurationMs: 0.8,
					EnvKeys: []string{"LOG_LEVEL", "REGION"}},
				{Plugin: "slow-env", Priority: 20, FailurePolicy: "ignore", Outcome: schemas.StepIgnored, DurationMs: 5000,
					Error: &schemas.Error{Code: schemas.CodeTimeout, Message: "no reply within 5s", Plugin: "slow-env"}},
				{Plugin: "stopped", Priority: 30, FailurePolicy: "ignore", Outcome: schemas.StepSkipped,
					Error: &schemas.Error{Code: schemas.CodeNotActive, Message: "plugin stopped is STALE"}},
			}},
		{ID: "c3", Hook: schemas.HookJobDockerfileInjection, Object: "job/web", Outcome: schemas.ChainNoSteps},
	}
}

func TestJobDeployChains(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	res := schemas.JobResponse{EventID: "ev-1", Chains: deployChains(), Job: schemas.Job{
		Name: "web", Version: "1.2.0", Image: "registry.internal/web:1", Status: schemas.JobDeployed, DeployedAt: when,
		Env:                 map[string]string{"LOG_LEVEL": "info", "REGION": "eu"},
		DockerfileInjection: "# job-policy\nRUN apk add ca-certificates\n",
	}}
	fb.reply(schemas.APIJobsDeploy, res)

	out := b.mustRun(t, "job", "deploy", "web", "--version", "1.2.0", "--image", "registry.internal/web:1")
	want := "" +
		"NAME:      web\n" +
		"VERSION:   1.2.0\n" +
		"IMAGE:     registry.internal/web:1\n" +
		"STATUS:    deployed\n" +
		"DEPLOYED:  2025-05-01T12:00:00Z\n" +
		"ENV:       LOG_LEVEL=info, REGION=eu\n" +
		"LABELS:    -\n" +
		"EVENT:     ev-1\n" +
		"\n" +
		"DOCKERFILE INJECTION:\n" +
		"  # job-policy\n" +
		"  RUN apk add ca-certificates\n" +
		"\n" +
		"hook job.pre_deploy   job-policy  continued  1.2ms\n" +
		"hook job.runtime_env  job-policy  continued  0.8ms  env +LOG_LEVEL,REGION\n" +
		"hook job.runtime_env  slow-env    ignored    5.0s   timeout: no reply within 5s\n" +
		"hook job.runtime_env  stopped     skipped    -      not_active: plugin stopped is STALE\n"
	if out != want {
		t.Errorf("job deploy =\n%s\nwant\n%s", out, want)
	}

	// -o json prints the whole reply, chains included.
	out = b.mustRun(t, "-o", "json", "job", "deploy", "web", "--version", "1.2.0", "--image", "registry.internal/web:1")
	var got schemas.JobResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, res) {
		t.Errorf("-o json = %+v\nwant %+v", got, res)
	}

	// job delete prints its job.pre_delete chain the same way.
	fb.reply(schemas.APIJobsDelete, schemas.JobResponse{EventID: "ev-2", Job: schemas.Job{Name: "web", Version: "1.2.0"},
		Chains: []schemas.ChainRecord{{Hook: schemas.HookJobPreDelete, Outcome: schemas.ChainCompleted,
			Steps: []schemas.StepRecord{{Plugin: "job-policy", Outcome: schemas.StepContinued, DurationMs: 0.3}}}}})
	out = b.mustRun(t, "job", "delete", "web", "--version", "1.2.0")
	if !strings.HasSuffix(out, "EVENT:     ev-2\n\nhook job.pre_delete  job-policy  continued  0.3ms\n") {
		t.Errorf("job delete =\n%s", out)
	}
}

func TestMachineActionChains(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	chains := []schemas.ChainRecord{{Hook: schemas.HookMachinePreAction, Outcome: schemas.ChainCompleted,
		Steps: []schemas.StepRecord{{Plugin: "guard", Outcome: schemas.StepPatched, DurationMs: 2.25}}}}
	fb.reply(schemas.APIMachinesAction, schemas.MachineActionResponse{Result: json.RawMessage(`"done"`), Chains: chains})
	if out := b.mustRun(t, "machine", "action", "m1", "increment"); out != "done\n\nhook machine.pre_action  guard  patched  2.2ms\n" {
		t.Errorf("machine action = %q", out)
	}
	// No result: the chain lines alone, without a leading blank line.
	fb.reply(schemas.APIMachinesAction, schemas.MachineActionResponse{Chains: chains})
	if out := b.mustRun(t, "machine", "action", "m1", "increment"); out != "hook machine.pre_action  guard  patched  2.2ms\n" {
		t.Errorf("machine action = %q", out)
	}
}

func TestRejected(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	reason := `image "docker.io/evil:latest" matches none of the allowed patterns: registry.internal/*`
	chain := schemas.ChainRecord{ID: "c1", Hook: schemas.HookJobPreDeploy, Object: "job/web",
		Outcome: schemas.ChainRejected, DurationMs: 0.9,
		Steps: []schemas.StepRecord{
			{Plugin: "audit", Priority: 5, FailurePolicy: "ignore", Outcome: schemas.StepContinued, DurationMs: 0.4},
			{Plugin: "job-policy", Priority: 10, FailurePolicy: "fail", Outcome: schemas.StepRejected, DurationMs: 0.5,
				Reason: reason},
			{Plugin: "late", Priority: 20, FailurePolicy: "fail", Outcome: schemas.StepNotReached},
		},
		Error: &schemas.Error{Code: schemas.CodeRejected, Message: reason, Plugin: "job-policy"}}
	fb.fail(schemas.APIJobsDeploy, &schemas.Error{Code: schemas.CodeRejected, Message: reason, Plugin: "job-policy",
		Details: map[string]any{"chain": chain}})

	for _, output := range []string{"table", "json"} {
		t.Run(output, func(t *testing.T) {
			r := b.busctl(t, "-o", output, "job", "deploy", "web", "--version", "1", "--image", "docker.io/evil:latest")
			if r.code != busctl.ExitError {
				t.Errorf("exit %d, want %d", r.code, busctl.ExitError)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
			want := "error: rejected: " + reason + " (plugin job-policy)\n" +
				"hook job.pre_deploy  audit       continued    0.4ms\n" +
				"hook job.pre_deploy  job-policy  rejected     0.5ms  " + reason + "\n" +
				"hook job.pre_deploy  late        not_reached  -\n" +
				"hint: plugin job-policy refused it at job.pre_deploy for the reason above: change the request to satisfy it; `busctl hooks ls job.pre_deploy` shows the chain\n"
			if r.stderr != want {
				t.Errorf("stderr =\n%s\nwant\n%s", r.stderr, want)
			}
		})
	}

	t.Run("plugin's own code, no chain", func(t *testing.T) {
		fb.fail(schemas.APIJobsDelete, &schemas.Error{Code: "protected", Message: "web is protected", Plugin: "job-policy"})
		r := b.busctl(t, "job", "delete", "web", "--version", "1")
		if r.code != busctl.ExitError || r.stderr != "error: protected: web is protected (plugin job-policy)\n" {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})

	t.Run("failed step under policy fail", func(t *testing.T) {
		failed := schemas.ChainRecord{Hook: schemas.HookMachinePreAction, Outcome: schemas.ChainFailed,
			Steps: []schemas.StepRecord{{Plugin: "guard", FailurePolicy: "fail", Outcome: schemas.StepFailed, DurationMs: 5000,
				Error: &schemas.Error{Code: schemas.CodeTimeout, Message: "no reply within 5s"}}}}
		fb.fail(schemas.APIMachinesAction, &schemas.Error{Code: schemas.CodeTimeout, Message: "hook machine.pre_action: guard did not answer",
			Plugin: "guard", Details: map[string]any{"chain": failed}})
		r := b.busctl(t, "machine", "action", "m1", "increment")
		for _, s := range []string{
			"error: timeout: hook machine.pre_action: guard did not answer (plugin guard)\n",
			"hook machine.pre_action  guard  failed  5.0s  timeout: no reply within 5s\n",
			"hint: plugin guard failed at machine.pre_action and its failure policy is fail: `busctl plugins get guard`",
		} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
		if r.code != busctl.ExitError {
			t.Errorf("exit %d", r.code)
		}
	})
}

func TestAlertSuppressed(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	res := schemas.AlertResponse{
		Alert: schemas.Alert{ID: "disk-full-h1", Severity: "critical", Summary: "disk full", Status: schemas.AlertSuppressed,
			Labels: map[string]string{"host": "h1"}, FiredAt: when},
		Chains: []schemas.ChainRecord{{Hook: schemas.HookAlertPreNotify, Object: "alert/disk-full-h1",
			Outcome: schemas.ChainRejected, Steps: []schemas.StepRecord{
				{Plugin: "labeler", Outcome: schemas.StepPatched, DurationMs: 0.2},
				{Plugin: "maint-window", Outcome: schemas.StepRejected, DurationMs: 0.6, Reason: "h1 is in a maintenance window"},
			}}},
	}
	fb.reply(schemas.APIAlertsFire, res)

	out := b.mustRun(t, "alert", "fire", "--severity", "critical", "--summary", "disk full", "--id", "disk-full-h1")
	want := "" +
		"ID            SEVERITY  STATUS      SUMMARY    LABELS   FIRED                 RESOLVED  EVENT\n" +
		"disk-full-h1  critical  suppressed  disk full  host=h1  2025-05-01T12:00:00Z  -         -\n" +
		"suppressed by plugin maint-window (alert.pre_notify): h1 is in a maintenance window; no event was published\n" +
		"\n" +
		"hook alert.pre_notify  labeler       patched   0.2ms\n" +
		"hook alert.pre_notify  maint-window  rejected  0.6ms  h1 is in a maintenance window\n"
	if out != want {
		t.Errorf("alert fire =\n%s\nwant\n%s", out, want)
	}

	out = b.mustRun(t, "-o", "json", "alert", "fire", "--severity", "critical", "--summary", "disk full")
	var got schemas.AlertResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, res) || strings.Contains(out, "event_id") {
		t.Errorf("-o json =\n%s", out)
	}
}
