package busctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// chainPlugin starts an SDK plugin with one job.pre_deploy step at
// priority; handle answers it.
func chainPlugin(t *testing.T, bus *plugintest.Bus, name string, priority int, handle sdk.HookHandler) {
	t.Helper()
	p, err := sdk.New(schemas.Manifest{Name: name, Version: "1.0.0", Description: "a job.pre_deploy step",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, Priority: &priority, Timeout: schemas.Duration(30 * time.Second)}}},
		sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	p.HandleHook(schemas.HookJobPreDeploy, handle)
	bus.StartPlugin(t, p)
}

// tableRow returns the line of a busctl table whose first cell is first.
func tableRow(out, first string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// busctl chains ls and chains get against a real broker and SDK plugins:
// a chain that runs shows its steps so far and its operation running; once
// the operation answered, chains get shows its answer (what a caller that
// went away reads), in a table, JSON and YAML; a refused operation shows
// its error; errors exit non-zero saying what to do.
func TestChainsGet(t *testing.T) {
	bus := plugintest.Start(t)
	release := make(chan struct{})
	chainPlugin(t, bus, "gate", 0, func(_ context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
		job, err := req.Job()
		if err != nil {
			return nil, err
		}
		if job.Image == "evil" {
			return sdk.Reject("image evil is not allowed"), nil
		}
		return sdk.Continue(), nil
	})
	chainPlugin(t, bus, "slow", 10, func(ctx context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
		if job, err := req.Job(); err == nil && job.Name == "web" {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return sdk.ContinueWith(map[string]any{"labels": map[string]string{"checked": "yes"}})
	})

	deployed := make(chan result, 1)
	go func() {
		var out, errOut strings.Builder
		code := busctl.Execute(context.Background(), []string{"--server", bus.URL(), "--timeout", "30s", "-o", "json",
			"job", "deploy", "web", "--version", "1", "--image", "nginx"}, &out, &errOut)
		deployed <- result{code: code, stdout: out.String(), stderr: errOut.String()}
	}()

	// While step 2 runs: the chain is listed as running, step 1 done.
	var id string
	bus.WaitFor(t, func() bool {
		var list schemas.ChainListResponse
		r := at(t, bus, "chains", "ls", "--object", "job/web", "-o", "json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Chains) != 1 {
			return false
		}
		id = list.Chains[0].ID
		return list.Chains[0].Outcome == schemas.ChainRunning
	})
	bus.WaitFor(t, func() bool {
		return strings.Contains(mustAt(t, bus, "chains", "get", id), "gate")
	})
	out := mustAt(t, bus, "chains", "get", id)
	if c := tableRow(out, id); len(c) < 4 || c[1] != schemas.HookJobPreDeploy || c[2] != "job/web" || c[3] != schemas.ChainRunning {
		t.Errorf("chains get of a running chain: chain row %q\n%s", c, out)
	}
	if s := tableRow(out, "1"); len(s) < 5 || s[1] != "gate" || s[2] != schemas.StepContinued || s[4] != "plugin" {
		t.Errorf("chains get of a running chain: step 1 %q\n%s", s, out)
	}
	if s := tableRow(out, "2"); len(s) < 2 || s[1] != "-" || s[2] != "running" {
		t.Errorf("chains get of a running chain: step 2 %q\n%s", s, out)
	}
	if op := tableRow(out, "OPERATION"); op == nil || !strings.Contains(out, schemas.APIJobsDeploy) ||
		!strings.Contains(out, " "+schemas.OperationRunning+" ") {
		t.Errorf("chains get of a running chain: operation\n%s", out)
	}

	close(release)
	var r result
	select {
	case r = <-deployed:
	case <-time.After(30 * time.Second):
		t.Fatal("job deploy did not answer")
	}
	var job schemas.JobResponse
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &job) != nil || job.EventID == "" || len(job.Chains) == 0 || job.Chains[0].ID != id {
		t.Fatalf("job deploy: exit %d %+v\n%s%s", r.code, job, r.stdout, r.stderr)
	}

	// Answered: chains get has the operation's answer.
	var st schemas.ChainStatus
	bus.WaitFor(t, func() bool {
		r := at(t, bus, "chains", "get", id, "-o", "json")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil && st.Operation.State == schemas.OperationDone
	})
	var answer schemas.JobResponse
	if err := json.Unmarshal(st.Operation.Result, &answer); err != nil || answer.EventID != job.EventID ||
		answer.Job.Labels["checked"] != "yes" || st.Operation.Endpoint != schemas.APIJobsDeploy || st.Operation.Error != nil {
		t.Errorf("chains get -o json: %v %+v\n%s", err, st.Operation, st.Operation.Result)
	}
	if st.Chain.ID != id || st.Chain.Outcome != schemas.ChainCompleted || len(st.Chain.Steps) != 2 ||
		st.Chain.Steps[0].Plugin != "gate" || st.Chain.Steps[1].Plugin != "slow" || st.Chain.Steps[1].Outcome != schemas.StepPatched {
		t.Errorf("chains get -o json: chain %+v", st.Chain)
	}
	out = mustAt(t, bus, "chains", "get", id)
	if c := tableRow(out, id); len(c) < 4 || c[3] != schemas.ChainCompleted {
		t.Errorf("chains get: chain row %q\n%s", c, out)
	}
	if s := tableRow(out, "2"); len(s) < 5 || s[1] != "slow" || s[2] != schemas.StepPatched || s[4] != "plugin" {
		t.Errorf("chains get: step 2 %q\n%s", s, out)
	}
	if !strings.Contains(out, " "+schemas.OperationDone+" ") || !strings.Contains(out, "ok, event "+job.EventID) {
		t.Errorf("chains get: no answer with event %s\n%s", job.EventID, out)
	}
	var y map[string]any
	if err := yaml.Unmarshal([]byte(mustAt(t, bus, "chains", "get", id, "-o", "yaml")), &y); err != nil {
		t.Errorf("chains get -o yaml: %v", err)
	} else if op, _ := y["operation"].(map[string]any); op["state"] != schemas.OperationDone {
		t.Errorf("chains get -o yaml: %v", y)
	}

	// A refused operation: its answer is the error.
	if r := at(t, bus, "job", "deploy", "bad", "--version", "1", "--image", "evil"); r.code != busctl.ExitError {
		t.Fatalf("job deploy of image evil: exit %d\n%s", r.code, r.stderr)
	}
	var bad string
	bus.WaitFor(t, func() bool {
		var list schemas.ChainListResponse
		r := at(t, bus, "chains", "ls", "--object", "job/bad", "-o", "json")
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Chains) != 1 {
			return false
		}
		bad = list.Chains[0].ID
		return list.Chains[0].Outcome == schemas.ChainRejected
	})
	bus.WaitFor(t, func() bool {
		return strings.Contains(mustAt(t, bus, "chains", "get", bad), " "+schemas.OperationDone+" ")
	})
	out = mustAt(t, bus, "chains", "get", bad)
	if !strings.Contains(out, schemas.CodeRejected+": ") || !strings.Contains(out, "image evil is not allowed") {
		t.Errorf("chains get of a refused operation: no error answer\n%s", out)
	}
	if s := tableRow(out, "2"); len(s) < 5 || s[1] != "slow" || s[2] != schemas.StepNotReached || s[4] != "-" {
		t.Errorf("chains get of a refused operation: step 2 %q\n%s", s, out)
	}

	// chains ls: newest first, narrowed by object and hook.
	out = mustAt(t, bus, "chains", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CHAIN ") || !strings.HasPrefix(lines[1], bad+" ") || !strings.HasPrefix(lines[2], id+" ") {
		t.Errorf("chains ls:\n%s", out)
	}
	if c := tableRow(out, id); len(c) < 6 || c[1] != schemas.HookJobPreDeploy || c[2] != "job/web" || c[3] != schemas.APIJobsDeploy ||
		c[4] != "2" || c[5] != schemas.ChainCompleted {
		t.Errorf("chains ls: row %q\n%s", c, out)
	}
	if out := mustAt(t, bus, "chains", "ls", "--limit", "1"); strings.Count(out, "\n") != 3 || !strings.Contains(out, bad) ||
		!strings.Contains(out, "more chains match") {
		t.Errorf("chains ls --limit 1:\n%s", out)
	}
	if out := mustAt(t, bus, "chains", "ls", "--hook", schemas.HookAlertPreNotify); strings.Count(out, "\n") != 1 {
		t.Errorf("chains ls --hook alert.pre_notify:\n%s", out)
	}
	var list schemas.ChainListResponse
	if err := json.Unmarshal([]byte(mustAt(t, bus, "chains", "ls", "--object", "job/nope", "-o", "json")), &list); err != nil ||
		list.Chains == nil || len(list.Chains) != 0 {
		t.Errorf("chains ls -o json of nothing: %v %+v", err, list)
	}

	// Completion offers the chains' ids.
	if out := mustAt(t, bus, "__complete", "chains", "get", ""); !strings.Contains(out, id+"\n") || !strings.Contains(out, bad+"\n") {
		t.Errorf("complete chains get:\n%s", out)
	}

	// Errors.
	for _, tt := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"chains", "get", "nope-0-0"}, busctl.ExitError, []string{"not_found", "busctl chains ls"}},
		{[]string{"chains", "get", "not a chain"}, busctl.ExitError, []string{"invalid_field", `field "id"`}},
		{[]string{"chains", "get"}, busctl.ExitUsage, []string{"missing ID"}},
		{[]string{"chains", "ls", "--hook", "job.nope"}, busctl.ExitUsage, []string{"unknown hook point", schemas.HookJobPreDeploy}},
		{[]string{"chains", "ls", "--limit", "0"}, busctl.ExitUsage, []string{"invalid --limit 0"}},
		{[]string{"chains", "ls", "--limit", "1001"}, busctl.ExitUsage, []string{"invalid --limit 1001"}},
	} {
		r := at(t, bus, tt.args...)
		ok := r.code == tt.code
		for _, w := range tt.want {
			ok = ok && strings.Contains(r.stderr, w)
		}
		if !ok {
			t.Errorf("busctl %s: exit %d, want %d with %q\n%s", strings.Join(tt.args, " "), r.code, tt.code, tt.want, r.stderr)
		}
	}
}
