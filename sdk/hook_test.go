package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

func hookManifest(name string) schemas.Manifest {
	return schemas.Manifest{Name: name, Version: "1.0.0", Hooks: []schemas.HookSpec{
		{Hook: schemas.HookJobPreDeploy, Timeout: schemas.Duration(2 * time.Second)},
		{Hook: schemas.HookJobRuntimeEnv},
		{Hook: schemas.HookJobDockerfileInjection},
		{Hook: schemas.HookJobBootstrapInjection},
		{Hook: schemas.HookJobPreDelete, Timeout: schemas.Duration(300 * time.Millisecond)},
		{Hook: schemas.HookMachinePreAction},
		{Hook: schemas.HookAlertPreNotify},
	}}
}

// callHook calls a hook subject of plugin and returns the response as JSON,
// or the error reply.
func callHook(t *testing.T, nc *nats.Conn, plugin, hook string, req schemas.HookRequest) (string, *schemas.Error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp json.RawMessage
	err := wire.Call(ctx, nc, wire.HookSubject(testPrefix, hook, plugin), req, &resp)
	if err != nil {
		var se *schemas.Error
		if !errors.As(err, &se) {
			t.Fatalf("call %s: %v", hook, err)
		}
		return "", se
	}
	return string(resp), nil
}

func jobPayload(image string) json.RawMessage {
	b, _ := json.Marshal(schemas.JobDeployRequest{Name: "web", Version: "1", Image: image, Env: map[string]string{"PORT": "80"}})
	return b
}

func TestHooks(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	logs := &syncBuffer{}
	p := newPlugin(t, hookManifest("hooker"), sdk.WithLogger(zerolog.New(logs)))

	var preDeployDeadline atomic.Int64 // ms left when the handler ran
	p.OnPreDeploy(func(ctx context.Context, job schemas.JobDeployRequest) (*schemas.HookResponse, error) {
		if dl, ok := ctx.Deadline(); ok {
			preDeployDeadline.Store(time.Until(dl).Milliseconds())
		}
		switch {
		case strings.HasPrefix(job.Image, "evil"):
			return sdk.Reject(fmt.Sprintf("image %q is not allowed", job.Image)), nil
		case job.Image == "nginx":
			return sdk.ContinueWith(map[string]any{"image": "nginx:1.27", "labels": map[string]string{"checked": "yes"}})
		case job.Image == "env-from-gate":
			return sdk.Env(map[string]string{"A": "1"}), nil
		}
		return sdk.Continue(), nil
	})
	p.OnRuntimeEnv(func(_ context.Context, job schemas.JobDeployRequest) (map[string]string, error) {
		return map[string]string{"JOB": job.Name, "PORT": "8080"}, nil
	})
	p.OnDockerfileInjection(func(_ context.Context, job schemas.JobDeployRequest) (string, error) {
		return "LABEL job=" + job.Name + "\n", nil
	})
	p.OnBootstrapInjection(func(context.Context, schemas.JobDeployRequest) (string, error) { return "", nil })
	p.OnPreDelete(func(ctx context.Context, job schemas.Job) (*schemas.HookResponse, error) {
		if job.Name == "slow" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the inventory to check %s", job.Name)
	})
	var inFlight atomic.Int32
	p.OnPreAction(func(ctx context.Context, a schemas.MachineActionRequest) (*schemas.HookResponse, error) {
		switch a.Command {
		case "wait": // both calls must be in the handler at once
			inFlight.Add(1)
			for inFlight.Load() < 2 {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
			return sdk.Continue(), nil
		case "locked":
			return nil, schemas.Errorf(schemas.CodeConflict, "machine", "machine %s is locked", a.Machine)
		}
		return sdk.RejectWithCode("maintenance", "machine "+a.Machine+" is in maintenance"), nil
	})
	p.OnPreNotify(func(context.Context, schemas.AlertFireRequest) (*schemas.HookResponse, error) { panic("boom") })
	runPlugin(t, s.ClientURL(), p)
	nc := connect(t, s.ClientURL())

	job := func(image string) schemas.HookRequest {
		return schemas.HookRequest{ChainID: "c1", Object: "job/web", Payload: jobPayload(image)}
	}
	tests := []struct {
		name     string
		hook     string
		req      schemas.HookRequest
		want     string
		wantCode string
		wantMsg  string
	}{
		{name: "continue", hook: schemas.HookJobPreDeploy, req: job("registry.internal/web:1"), want: `{"outcome":"continue"}`},
		{name: "patch", hook: schemas.HookJobPreDeploy, req: job("nginx"),
			want: `{"outcome":"continue","patch":{"image":"nginx:1.27","labels":{"checked":"yes"}}}`},
		{name: "reject", hook: schemas.HookJobPreDeploy, req: job("evil:latest"),
			want: `{"outcome":"reject","reason":"image \"evil:latest\" is not allowed"}`},
		{name: "env", hook: schemas.HookJobRuntimeEnv, req: job("nginx"), want: `{"outcome":"continue","env":{"JOB":"web","PORT":"8080"}}`},
		{name: "fragment", hook: schemas.HookJobDockerfileInjection, req: job("nginx"), want: `{"outcome":"continue","fragment":"LABEL job=web\n"}`},
		{name: "reject with a code", hook: schemas.HookMachinePreAction,
			req:  schemas.HookRequest{Object: "machine/m1", Payload: json.RawMessage(`{"machine":"m1","command":"reboot","plugin":"ipmi"}`)},
			want: `{"outcome":"reject","reason":"machine m1 is in maintenance","code":"maintenance"}`},
		{name: "empty fragment", hook: schemas.HookJobBootstrapInjection, req: job("nginx"), want: `{"outcome":"continue"}`},
		{name: "plain error", hook: schemas.HookJobPreDelete,
			req:      schemas.HookRequest{Object: "job/web", Payload: json.RawMessage(`{"name":"web","version":"1","image":"x","status":"deployed","deployed_at":"2025-01-01T00:00:00Z"}`)},
			wantCode: schemas.CodePluginError, wantMsg: "cannot reach the inventory to check web"},
		{name: "coded error", hook: schemas.HookMachinePreAction,
			req:      schemas.HookRequest{Object: "machine/m1", Payload: json.RawMessage(`{"machine":"m1","command":"locked"}`)},
			wantCode: schemas.CodeConflict, wantMsg: "machine m1 is locked"},
		{name: "panic", hook: schemas.HookAlertPreNotify,
			req:      schemas.HookRequest{Object: "alert/a", Payload: json.RawMessage(`{"id":"a","severity":"info","summary":"s"}`)},
			wantCode: schemas.CodePluginError, wantMsg: "handler panicked: boom"},
		{name: "payload of the wrong type", hook: schemas.HookJobPreDeploy,
			req:      schemas.HookRequest{Object: "job/web", Payload: json.RawMessage(`{"name":5}`)},
			wantCode: schemas.CodeInvalidField, wantMsg: "the job.pre_deploy payload cannot be read as *schemas.JobDeployRequest"},
		{name: "no payload", hook: schemas.HookJobPreDeploy, req: schemas.HookRequest{Object: "job/web"},
			wantCode: schemas.CodeInvalidField, wantMsg: "has no payload"},
		{name: "a response the hook cannot take", hook: schemas.HookJobPreDeploy, req: job("env-from-gate"),
			wantCode: schemas.CodePluginError, wantMsg: "hook job.pre_deploy answered env vars, but only job.runtime_env takes them"},
		{name: "a request for another hook", hook: schemas.HookJobPreDeploy,
			req:      schemas.HookRequest{Hook: schemas.HookJobPreDelete, Object: "job/web", Payload: jobPayload("x")},
			wantCode: schemas.CodeBadRequest, wantMsg: "a job.pre_delete request arrived on the job.pre_deploy subject"},
		{name: "past the deadline", hook: schemas.HookJobPreDelete,
			req:      schemas.HookRequest{Object: "job/slow", Payload: json.RawMessage(`{"name":"slow","version":"1","image":"x","status":"deployed","deployed_at":"2025-01-01T00:00:00Z"}`)},
			wantCode: schemas.CodeTimeout, wantMsg: "did not answer within 270ms (the hook's timeout is 300ms)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, se := callHook(t, nc, "hooker", tt.hook, tt.req)
			if tt.wantCode != "" {
				if se == nil || se.Code != tt.wantCode {
					t.Fatalf("got %s / %v, want error %s", got, se, tt.wantCode)
				}
				if !strings.Contains(se.Message, tt.wantMsg) || se.Plugin != "hooker" {
					t.Errorf("error %+v: want message with %q and plugin hooker", se, tt.wantMsg)
				}
				return
			}
			if se != nil {
				t.Fatal(se)
			}
			if got != tt.want {
				t.Errorf("response %s, want %s", got, tt.want)
			}
			if err := schemas.Validate(schemas.APIHookResponse, []byte(got)); err != nil {
				t.Errorf("response fails its schema: %v", err)
			}
		})
	}

	t.Run("deadline shorter than the timeout", func(t *testing.T) {
		if _, se := callHook(t, nc, "hooker", schemas.HookJobPreDeploy, job("ok")); se != nil {
			t.Fatal(se)
		}
		// Timeout 2s: the handler gets 2s less a tenth (at most 500ms).
		if left := preDeployDeadline.Load(); left <= 1000 || left > 1800 {
			t.Errorf("handler deadline %dms away, want about 1800ms", left)
		}
	})

	t.Run("calls are handled concurrently", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]*schemas.Error, 2)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = callHook(t, nc, "hooker", schemas.HookMachinePreAction,
					schemas.HookRequest{Object: "machine/m1", Payload: json.RawMessage(`{"machine":"m1","command":"wait"}`)})
			})
		}
		wg.Wait()
		for _, se := range errs {
			if se != nil {
				t.Errorf("concurrent call: %v", se)
			}
		}
	})

	t.Run("endpoints", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msg, err := nc.RequestWithContext(ctx, "$SRV.INFO."+wire.PluginService("hooker"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var info micro.Info
		if err := json.Unmarshal(msg.Data, &info); err != nil {
			t.Fatal(err)
		}
		subjects := map[string]string{}
		for _, ep := range info.Endpoints {
			subjects[ep.Name] = ep.Subject + " " + ep.QueueGroup
		}
		for _, h := range schemas.HookPoints {
			name := "hook_" + strings.ReplaceAll(h, ".", "_")
			if want := wire.HookSubject(testPrefix, h, "hooker") + " q"; subjects[name] != want {
				t.Errorf("endpoint %s = %q, want %q", name, subjects[name], want)
			}
		}
	})

	st := p.Stats()
	if st.HooksHandled != 10 || st.HooksRejected != 2 || st.HooksFailed != 8 {
		t.Errorf("stats = %+v, want 10 handled (2 rejected) and 8 failed", st)
	}
}

func TestRunRefusesUndeclaredHookHandler(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		name string
		hook string
		want string
	}{
		{"not declared", schemas.HookJobPreDelete, `a handler is set for job.pre_delete but the manifest does not declare it; add {"hook": "job.pre_delete"}`},
		{"not a hook point", "job.post_deploy", `a handler is set for "job.post_deploy", which is not a hook point (hook points: job.pre_deploy, `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlugin(t, schemas.Manifest{Name: "x", Version: "1.0.0", Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}})
			noop := func(context.Context, *sdk.HookRequest) (*schemas.HookResponse, error) { return nil, nil }
			p.HandleHook(schemas.HookJobPreDeploy, noop)
			p.HandleHook(tt.hook, noop)
			err := p.Run(context.Background(), connect(t, s.ClientURL()))
			if !errors.Is(err, sdk.ErrInvalidManifest) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want ErrInvalidManifest with %q", err, tt.want)
			}
		})
	}
}

func TestHookRequestAccessors(t *testing.T) {
	req := func(hook, payload string) *sdk.HookRequest {
		return &sdk.HookRequest{HookRequest: schemas.HookRequest{Hook: hook, Payload: json.RawMessage(payload)}}
	}
	job, err := req(schemas.HookJobRuntimeEnv, `{"name":"web","version":"1","image":"nginx","env":{"A":"1"}}`).Job()
	if err != nil || job.Name != "web" || job.Env["A"] != "1" {
		t.Errorf("Job = %+v, %v", job, err)
	}
	del, err := req(schemas.HookJobPreDelete, `{"name":"web","version":"1","image":"nginx","status":"deployed","deployed_at":"2025-01-01T00:00:00Z"}`).DeletedJob()
	if err != nil || del.Status != schemas.JobDeployed || del.DeployedAt.Year() != 2025 {
		t.Errorf("DeletedJob = %+v, %v", del, err)
	}
	act, err := req(schemas.HookMachinePreAction, `{"machine":"m1","command":"increment","params":{"step":2},"plugin":"incrementer"}`).Action()
	if err != nil || act.Plugin != "incrementer" || act.Params["step"] != 2.0 {
		t.Errorf("Action = %+v, %v", act, err)
	}
	alert, err := req(schemas.HookAlertPreNotify, `{"id":"disk","severity":"critical","summary":"full"}`).Alert()
	if err != nil || alert.ID != "disk" || alert.Severity != schemas.SeverityCritical {
		t.Errorf("Alert = %+v, %v", alert, err)
	}
	var m map[string]any
	if err := req(schemas.HookAlertPreNotify, `{"id":"disk"}`).Decode(&m); err != nil || m["id"] != "disk" {
		t.Errorf("Decode = %v, %v", m, err)
	}
	// A request built without a hook (in a test) is not checked.
	if _, err := req("", `{"name":"web"}`).Job(); err != nil {
		t.Errorf("Job without a hook: %v", err)
	}

	errTests := []struct {
		name string
		err  error
		want string
	}{
		{"wrong accessor", func() error { _, err := req(schemas.HookJobPreDelete, `{}`).Job(); return err }(),
			"HookRequest.Job reads the payload of job.pre_deploy, job.runtime_env, job.dockerfile_injection, job.bootstrap_injection, not of job.pre_delete"},
		{"wrong accessor for an alert", func() error { _, err := req(schemas.HookJobPreDeploy, `{}`).Alert(); return err }(),
			"HookRequest.Alert reads the payload of alert.pre_notify, not of job.pre_deploy"},
		{"bad payload", func() error { _, err := req(schemas.HookMachinePreAction, `{"params":[]}`).Action(); return err }(),
			`invalid_field: the machine.pre_action payload cannot be read as *schemas.MachineActionRequest`},
		{"empty payload", func() error { _, err := req(schemas.HookAlertPreNotify, ``).Alert(); return err }(),
			"the alert.pre_notify request has no payload"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", tt.err, tt.want)
			}
		})
	}
}

func TestHookResponseConstructors(t *testing.T) {
	withPatch := func(patch any) *schemas.HookResponse {
		r, err := sdk.ContinueWith(patch)
		if err != nil {
			t.Fatalf("ContinueWith(%v): %v", patch, err)
		}
		return r
	}
	tests := []struct {
		name string
		r    *schemas.HookResponse
		want string
	}{
		{"continue", sdk.Continue(), `{"outcome":"continue"}`},
		{"continue with a map", withPatch(map[string]any{"labels": map[string]any{"a": "1", "b": nil}}), `{"outcome":"continue","patch":{"labels":{"a":"1","b":null}}}`},
		{"continue with a struct", withPatch(struct {
			Image string `json:"image"`
		}{"nginx:1.27"}), `{"outcome":"continue","patch":{"image":"nginx:1.27"}}`},
		{"continue with raw JSON", withPatch(json.RawMessage(` {"params":{"step":2}} `)), `{"outcome":"continue","patch":{"params":{"step":2}}}`},
		{"continue with bytes", withPatch([]byte(`{"summary":"x"}`)), `{"outcome":"continue","patch":{"summary":"x"}}`},
		{"continue with nil", withPatch(nil), `{"outcome":"continue"}`},
		{"reject", sdk.Reject("no"), `{"outcome":"reject","reason":"no"}`},
		{"reject with a code", sdk.RejectWithCode("policy_violation", "no"), `{"outcome":"reject","reason":"no","code":"policy_violation"}`},
		{"env", sdk.Env(map[string]string{"B": "2", "A": "1"}), `{"outcome":"continue","env":{"A":"1","B":"2"}}`},
		{"no env", sdk.Env(nil), `{"outcome":"continue"}`},
		{"fragment", sdk.Fragment("RUN true\n"), `{"outcome":"continue","fragment":"RUN true\n"}`},
		{"no fragment", sdk.Fragment(""), `{"outcome":"continue"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("JSON = %s, want %s", b, tt.want)
			}
			if err := schemas.Validate(schemas.APIHookResponse, b); err != nil {
				t.Errorf("fails its schema: %v", err)
			}
		})
	}
	for _, bad := range []any{[]string{"a"}, json.RawMessage(`"x"`), []byte(`{`), func() {}, json.RawMessage(`null`)} {
		if r, err := sdk.ContinueWith(bad); err == nil {
			t.Errorf("ContinueWith(%v) = %+v, want an error", bad, r)
		}
	}
}
