package schemas_test

import (
	"encoding/json"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// sample is a realistic value of a Go type and the schema it must satisfy.
type sample struct {
	name string
	path string
	v    any
}

var (
	t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)
	t1 = t0.Add(90 * time.Second)
)

func intp(i int) *int { return &i }

func sampleManifest() schemas.Manifest {
	return schemas.Manifest{
		Name:        "incrementer",
		Version:     "1.4.2-rc.1+build.7",
		Description: "Increments a machine param on demand.",
		URL:         "https://github.com/plugbus/plugbus/tree/main/plugins/incrementer",
		Category:    "infrastructure",
		Priority:    -10,
		Components:  []string{"compute", "edge"},
		Events: &schemas.EventSubscription{
			Types:      []string{schemas.TypeJobDeployed, "io.plugbus.alert.v1.*", "com.example.billing.v2.invoice_paid"},
			AckWait:    schemas.Duration(30 * time.Second),
			MaxDeliver: 5,
			Backoff:    []schemas.Duration{schemas.Duration(250 * time.Millisecond), schemas.Duration(1500 * time.Microsecond), schemas.Duration(90 * time.Second)},
			Start:      t0.Format(time.RFC3339),
		},
		Hooks: []schemas.HookSpec{
			{Hook: "job.pre_deploy", Priority: intp(5), Timeout: schemas.Duration(2 * time.Second), FailurePolicy: schemas.FailurePolicyFail},
			{Hook: "job.runtime_env", FailurePolicy: schemas.FailurePolicyIgnore, Override: true},
		},
		Actions: []schemas.ActionSpec{
			{Command: "increment", Model: "machines", Description: "Adds step to a param.",
				RequiredParams: []string{"incrementer/parameter"}, OptionalParams: []string{"incrementer/step", "incrementer.touched"}},
			{Command: "reset_all"},
		},
		RequiredParams: []string{"incrementer/default-step"},
		ConfigSchema:   json.RawMessage(`{"type":"object","properties":{"incrementer/default-step":{"type":"integer","minimum":1}}}`),
	}
}

func sampleError() *schemas.Error {
	return &schemas.Error{Code: schemas.CodePluginError, Message: "machine is locked", Field: "params.incrementer/step",
		Plugin: "incrementer", Details: map[string]any{"retry_after": "5s"}}
}

func sampleRecord() schemas.PluginRecord {
	return schemas.PluginRecord{
		Name: "incrementer", Version: "1.4.2-rc.1+build.7", State: schemas.StateError, Manifest: sampleManifest(),
		LastError: sampleError(), Metadata: map[string]any{"build": "abc123", "features": []any{"a", "b"}},
		Config: map[string]any{"incrementer/default-step": 2}, Consumer: schemas.ConsumerName("incrementer"),
		RegisteredAt: t0, UpdatedAt: t1,
	}
}

func sampleJob() schemas.Job {
	return schemas.Job{Name: "web-frontend", Version: "2024.11.3", Image: "ghcr.io/acme/web:2024.11.3@sha256:0123abcd",
		Env: map[string]string{"PORT": "8080", "_DEBUG": "1"}, Labels: map[string]string{"team": "web", "app.kubernetes.io/name": "web"},
		Status: schemas.JobDeleted, DeployedAt: t0, DeletedAt: &t1}
}

func sampleMachine() schemas.Machine {
	return schemas.Machine{Name: "rack1-node07.dc2", Params: map[string]any{"incrementer/step": 3, "incrementer/touched": true, "os": "debian-12"}, UpdatedAt: t1}
}

func sampleAlert(resolved bool) schemas.Alert {
	a := schemas.Alert{ID: "disk-full.node07", Severity: schemas.SeverityCritical, Summary: "disk 95% full on node07",
		Labels: map[string]string{"host": "node07"}, Status: schemas.AlertFiring, FiredAt: t0}
	if resolved {
		a.Status, a.ResolvedAt = schemas.AlertResolved, &t1
	}
	return a
}

func sampleChain() schemas.ChainRecord {
	return schemas.ChainRecord{ID: "6f1c2a9e-3b7d-4c1e-9a55-0d3c9a1f2b11", Hook: schemas.HookJobPreDeploy, Object: "job/web-frontend",
		Outcome: schemas.ChainRejected, StartedAt: t0, DurationMs: 12.75,
		Steps: []schemas.StepRecord{
			{Plugin: "audit", Priority: -10, FailurePolicy: schemas.FailurePolicyIgnore, Outcome: schemas.StepIgnored, DurationMs: 5000,
				Error: &schemas.Error{Code: schemas.CodeTimeout, Message: "no answer within 5s", Plugin: "audit"}},
			{Plugin: "tagger", Priority: 0, FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepPatched, DurationMs: 1.5},
			{Plugin: "job-policy", Priority: 0, FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepRejected, DurationMs: 0.4,
				Reason: `image "docker.io/evil:latest" matches none of the allowed patterns: registry.internal/*`},
			{Plugin: "zz-last", Priority: 100, FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepNotReached},
		},
		Error: &schemas.Error{Code: schemas.CodeRejected, Plugin: "job-policy",
			Message: `image "docker.io/evil:latest" matches none of the allowed patterns: registry.internal/*`}}
}

func sampleEnvChain() schemas.ChainRecord {
	return schemas.ChainRecord{ID: "c-2", Hook: schemas.HookJobRuntimeEnv, Object: "job/web-frontend", Outcome: schemas.ChainCompleted,
		StartedAt: t0, DurationMs: 0.9, Steps: []schemas.StepRecord{
			{Plugin: "job-policy", FailurePolicy: schemas.FailurePolicyIgnore, Outcome: schemas.StepContinued, DurationMs: 0.9, EnvKeys: []string{"HTTP_PROXY", "_TRACE"}},
			{Plugin: "stopped", FailurePolicy: schemas.FailurePolicyIgnore, Outcome: schemas.StepSkipped,
				Error: &schemas.Error{Code: schemas.CodeNotActive, Message: "plugin stopped is STALE, not ACTIVE: skipped", Plugin: "stopped"}},
		}}
}

func sampleHookStep() schemas.HookStep {
	return schemas.HookStep{Plugin: "job-policy", Version: "1.0.0", Priority: -5, Timeout: schemas.Duration(2500 * time.Millisecond), WhenInactive: schemas.WhenInactiveFail,
		FailurePolicy: schemas.FailurePolicyFail, Override: true, State: schemas.StateActive}
}

// samples covers every document schema with a populated value, plus the
// minimal values Go produces for empty types and nil slices/maps.
func samples() []sample {
	return append([]sample{
		{"manifest", schemas.ManifestV1, sampleManifest()},
		{"manifest minimal", schemas.ManifestV1, schemas.Manifest{Name: "a", Version: "0.0.1"}},
		{"error", schemas.APIError, sampleError()},
		{"register request", schemas.APIRegisterRequest, schemas.RegisterRequest{Manifest: sampleManifest(), InstanceID: "NnkUxHRQ1Z7ab0cd", Config: map[string]any{"incrementer/default-step": 1}}},
		{"register response", schemas.APIRegisterResponse, schemas.RegisterResponse{Plugin: sampleRecord(), Changed: true}},
		{"plugin record", schemas.APIPluginRecord, sampleRecord()},
		{"plugin list request", schemas.APIPluginListRequest, schemas.PluginListRequest{State: schemas.StateActive}},
		{"plugin list request empty", schemas.APIPluginListRequest, schemas.PluginListRequest{}},
		{"plugin list response", schemas.APIPluginListResponse, schemas.PluginListResponse{Plugins: []schemas.PluginRecord{sampleRecord()}}},
		{"plugin list response nil", schemas.APIPluginListResponse, schemas.PluginListResponse{}},
		{"plugin list request page", schemas.APIPluginListRequest, schemas.PluginListRequest{Limit: schemas.MaxPluginPage, After: "audit"}},
		{"plugin list response page", schemas.APIPluginListResponse, schemas.PluginListResponse{Plugins: []schemas.PluginRecord{sampleRecord()}, NextAfter: sampleRecord().Name}},
		{"plugin get request", schemas.APIPluginGetRequest, schemas.PluginGetRequest{Name: "incrementer"}},
		{"plugin unregister request", schemas.APIPluginUnregisterRequest, schemas.PluginUnregisterRequest{Name: "incrementer", Force: true}},
		{"plugin config request", schemas.APIPluginConfigRequest, schemas.PluginConfigRequest{Name: "incrementer", Set: map[string]any{"incrementer/default-step": 4}}},
		{"init request", schemas.APIInitRequest, schemas.InitRequest{Name: "incrementer", Version: "1.4.2"}},
		{"init response", schemas.APIInitResponse, schemas.InitResponse{Metadata: map[string]any{"pid": 4242}}},
		{"config request", schemas.APIConfigRequest, schemas.ConfigRequest{Config: map[string]any{"incrementer/default-step": 4}}},
		{"config request nil", schemas.APIConfigRequest, schemas.ConfigRequest{}},
		{"config response", schemas.APIConfigResponse, schemas.ConfigResponse{}},
		{"verify request", schemas.APIVerifyRequest, schemas.VerifyRequest{}},
		{"verify response", schemas.APIVerifyResponse, schemas.VerifyResponse{Ready: false, Message: "waiting for the database"}},
		{"action request", schemas.APIActionRequest, schemas.ActionRequest{ActionID: "act-01HZX3", Command: "increment", Model: "machines", Object: "rack1-node07.dc2",
			Params: map[string]any{"incrementer/parameter": "counter", "incrementer/step": 2}}},
		{"action response", schemas.APIActionResponse, schemas.ActionResponse{Result: json.RawMessage(`{"counter":7}`)}},
		{"job", schemas.APIJob, sampleJob()},
		{"job deploy request", schemas.APIJobDeployRequest, schemas.JobDeployRequest{Name: "web-frontend", Version: "v1.2.3", Image: "nginx:1.27",
			Env: map[string]string{"PORT": "8080"}, Labels: map[string]string{"team": "web"}}},
		{"job ref", schemas.APIJobRef, schemas.JobRef{Name: "web-frontend", Version: "v1.2.3"}},
		{"job response", schemas.APIJobResponse, schemas.JobResponse{Job: sampleJob(), EventID: "01HZX3Q7Y6M2V9"}},
		{"job response with chains", schemas.APIJobResponse, schemas.JobResponse{Job: sampleJob(), EventID: "01HZX3Q7Y6M2V9",
			Chains: []schemas.ChainRecord{sampleEnvChain(), {ID: "c-3", Hook: schemas.HookJobPreDelete, Object: "job/web", Outcome: schemas.ChainNoSteps, StartedAt: t1}}}},
		{"job with injections", schemas.APIJob, schemas.Job{Name: "web", Version: "1", Image: "nginx", Status: schemas.JobDeployed, DeployedAt: t0,
			DockerfileInjection: "# --- plugbus: certs ---\nCOPY ca.pem /etc/ssl/\n", BootstrapInjection: "# --- plugbus: agent ---\n/opt/agent start\n"}},
		{"job list request", schemas.APIJobListRequest, schemas.JobListRequest{}},
		{"job list response", schemas.APIJobListResponse, schemas.JobListResponse{Jobs: []schemas.Job{sampleJob()}}},
		{"job list response nil", schemas.APIJobListResponse, schemas.JobListResponse{}},
		{"machine", schemas.APIMachine, sampleMachine()},
		{"machine nil params", schemas.APIMachine, schemas.Machine{Name: "m1", UpdatedAt: t0}},
		{"machine ref", schemas.APIMachineRef, schemas.MachineRef{Name: "rack1-node07.dc2"}},
		{"machine list request", schemas.APIMachineListRequest, schemas.MachineListRequest{}},
		{"machine list response", schemas.APIMachineListResponse, schemas.MachineListResponse{Machines: []schemas.Machine{sampleMachine()}}},
		{"machine set param request", schemas.APIMachineSetParamRequest, schemas.MachineSetParamRequest{Machine: "m1", Param: "incrementer/step", Value: 3}},
		{"machine set param request delete", schemas.APIMachineSetParamRequest, schemas.MachineSetParamRequest{Machine: "m1", Param: "incrementer/step"}},
		{"machine action request", schemas.APIMachineActionRequest, schemas.MachineActionRequest{Machine: "m1", Command: "increment",
			Params: map[string]any{"incrementer/step": 2}, Plugin: "incrementer"}},
		{"machine action response", schemas.APIMachineActionResponse, schemas.MachineActionResponse{ActionID: "act-1", Machine: "m1", Command: "increment",
			Plugin: "incrementer", Result: json.RawMessage(`7`)}},
		{"machine action response with chain", schemas.APIMachineActionResponse, schemas.MachineActionResponse{ActionID: "act-1", Machine: "m1", Command: "increment",
			Plugin: "incrementer", Chains: []schemas.ChainRecord{{ID: "c-4", Hook: schemas.HookMachinePreAction, Object: "machine/m1",
				Outcome: schemas.ChainCompleted, StartedAt: t0, DurationMs: 2, Steps: []schemas.StepRecord{
					{Plugin: "guard", FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepPatched, DurationMs: 2}}}}}},
		{"alert", schemas.APIAlert, sampleAlert(true)},
		{"alert fire request", schemas.APIAlertFireRequest, schemas.AlertFireRequest{ID: "disk-full.node07", Severity: schemas.SeverityWarning,
			Summary: "disk 85% full", Labels: map[string]string{"host": "node07"}}},
		{"alert fire request no id", schemas.APIAlertFireRequest, schemas.AlertFireRequest{Severity: schemas.SeverityInfo, Summary: "deploy window opens"}},
		{"alert ref", schemas.APIAlertRef, schemas.AlertRef{ID: "disk-full.node07"}},
		{"alert response", schemas.APIAlertResponse, schemas.AlertResponse{Alert: sampleAlert(false), EventID: "01HZX3Q7Y6M2VA"}},
		{"alert response suppressed", schemas.APIAlertResponse, schemas.AlertResponse{
			Alert: schemas.Alert{ID: "noisy", Severity: schemas.SeverityInfo, Summary: "flapping", Status: schemas.AlertSuppressed, FiredAt: t0},
			Chains: []schemas.ChainRecord{{ID: "c-5", Hook: schemas.HookAlertPreNotify, Object: "alert/noisy", Outcome: schemas.ChainRejected,
				StartedAt: t0, DurationMs: 1, Steps: []schemas.StepRecord{{Plugin: "silencer", FailurePolicy: schemas.FailurePolicyFail,
					Outcome: schemas.StepRejected, DurationMs: 1, Reason: "silenced until 10:00"}},
				Error: &schemas.Error{Code: schemas.CodeRejected, Message: "silenced until 10:00", Plugin: "silencer"}}}}},
		{"hook request", schemas.APIHookRequest, schemas.HookRequest{Hook: schemas.HookJobRuntimeEnv, ChainID: "6f1c2a9e", Object: "job/web-frontend",
			Step: 2, Payload: json.RawMessage(`{"name":"web-frontend","version":"1","image":"nginx","env":{"PORT":"8080"}}`),
			Env: map[string]string{"PORT": "8080", "HTTP_PROXY": "http://proxy:3128"}}},
		{"hook request gate", schemas.APIHookRequest, schemas.HookRequest{Hook: schemas.HookMachinePreAction, ChainID: "c", Object: "machine/m1",
			Payload: json.RawMessage(`{"machine":"m1","command":"increment","plugin":"incrementer"}`)}},
		{"hook response empty", schemas.APIHookResponse, schemas.HookResponse{}},
		{"hook response patch", schemas.APIHookResponse, schemas.HookResponse{Outcome: schemas.HookContinue, Patch: json.RawMessage(`{"labels":{"team":null,"checked":"yes"}}`)}},
		{"hook response reject", schemas.APIHookResponse, schemas.HookResponse{Outcome: schemas.HookReject, Reason: "no", Code: "policy_violation"}},
		{"hook response env", schemas.APIHookResponse, schemas.HookResponse{Env: map[string]string{"HTTP_PROXY": "http://proxy:3128"}}},
		{"hook response fragment", schemas.APIHookResponse, schemas.HookResponse{Fragment: "RUN apt-get install -y ca-certificates\n"}},
		{"hook step", schemas.APIHookStep, sampleHookStep()},
		{"hook chain", schemas.APIHookChain, schemas.HookChain{Hook: schemas.HookJobPreDeploy, Steps: []schemas.HookStep{sampleHookStep()}}},
		{"hook chain nil steps", schemas.APIHookChain, schemas.HookChain{Hook: schemas.HookAlertPreNotify}},
		{"hook list request", schemas.APIHookListRequest, schemas.HookListRequest{Hook: schemas.HookJobBootstrapInjection}},
		{"hook list request empty", schemas.APIHookListRequest, schemas.HookListRequest{}},
		{"hook list response", schemas.APIHookListResponse, schemas.HookListResponse{Chains: []schemas.HookChain{
			{Hook: schemas.HookJobPreDeploy, Steps: []schemas.HookStep{sampleHookStep()}}, {Hook: schemas.HookJobRuntimeEnv, Steps: []schemas.HookStep{}}}}},
		{"hook list response nil", schemas.APIHookListResponse, schemas.HookListResponse{}},
		{"step record", schemas.APIStepRecord, sampleChain().Steps[0]},
		{"chain record", schemas.APIChainRecord, sampleChain()},
		{"chain record nil steps", schemas.APIChainRecord, schemas.ChainRecord{ID: "c", Hook: schemas.HookJobPreDelete, Object: "job/web", Outcome: schemas.ChainNoSteps, StartedAt: t0}},
		{"chain completed", schemas.EventHookChainCompleted, sampleEnvChain()},
		{"chain get request", schemas.APIChainGetRequest, schemas.ChainGetRequest{ID: "3bX9kQ2mVx2dY9pLr0sT8u-mbq2x1k0-1"}},
		{"chain status running", schemas.APIChainStatus, schemas.ChainStatus{
			Chain: schemas.ChainRecord{ID: "3bX9kQ2mVx2dY9pLr0sT8u-mbq2x1k0-0", Hook: schemas.HookAlertPreNotify, Object: "alert/a1",
				Outcome: schemas.ChainRunning, StartedAt: t0, Resumed: true, Steps: []schemas.StepRecord{
					{Plugin: "tagger", FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepPatched, DurationMs: 1.5, Replayed: true}}},
			Operation: schemas.ChainOperation{ID: "3bX9kQ2mVx2dY9pLr0sT8u", Endpoint: schemas.APIAlertsFire, State: schemas.OperationRunning,
				StartedAt: t0, UpdatedAt: t1, Resumes: 1}}},
		{"chain status done", schemas.APIChainStatus, schemas.ChainStatus{Chain: sampleChain(),
			Operation: schemas.ChainOperation{ID: "3bX9kQ2mVx2dY9pLr0sT8u", Endpoint: schemas.APIJobsDeploy, State: schemas.OperationDone,
				Attempt: 1, StartedAt: t0, UpdatedAt: t1, Error: sampleChain().Error}}},
		{"chain list request", schemas.APIChainListRequest, schemas.ChainListRequest{Object: "job/web", Hook: schemas.HookJobPreDeploy, Limit: 10}},
		{"chain list request empty", schemas.APIChainListRequest, schemas.ChainListRequest{}},
		{"chain list response", schemas.APIChainListResponse, schemas.ChainListResponse{Chains: []schemas.ChainSummary{
			{ID: "3bX9kQ2mVx2dY9pLr0sT8u-mbq2x1k0-0", Hook: schemas.HookAlertPreNotify, Object: "alert/a1", Operation: "3bX9kQ2mVx2dY9pLr0sT8u",
				Endpoint: schemas.APIAlertsFire, StartedAt: t0, Steps: 5, Outcome: schemas.ChainCompleted, Resumed: true}}, Truncated: true}},
		{"job deployed", schemas.EventJobDeployed, schemas.JobDeployedData{Name: "web", Version: "1", Image: "nginx:1.27",
			Env: map[string]string{"PORT": "80"}, Labels: map[string]string{"team": "web"}, DeployedAt: t0}},
		{"job deployed with hooks", schemas.EventJobDeployed, schemas.JobDeployedData{Name: "web", Version: "1", Image: "nginx:1.27",
			Env: map[string]string{"PORT": "80", "HTTP_PROXY": "http://proxy:3128"}, DockerfileInjection: "# --- plugbus: certs ---\nCOPY ca.pem /etc/ssl/\n",
			BootstrapInjection: "# --- plugbus: agent ---\n/opt/agent start\n", ChainIDs: []string{"c-1", "c-2"}, DeployedAt: t0}},
		{"job deleted", schemas.EventJobDeleted, schemas.JobDeletedData{Name: "web", Version: "1", Image: "nginx:1.27", DeletedAt: t1}},
		{"machine action requested", schemas.EventMachineActionRequested, schemas.MachineActionRequestedData{ActionID: "act-1", Machine: "m1",
			Command: "increment", Plugin: "incrementer", Params: map[string]any{"incrementer/step": 2}}},
		{"machine action completed", schemas.EventMachineActionCompleted, schemas.MachineActionCompletedData{ActionID: "act-1", Machine: "m1",
			Command: "increment", Plugin: "incrementer", Status: schemas.ActionSucceeded, Result: json.RawMessage(`{"counter":7}`), DurationMs: 12.5}},
		{"machine action failed", schemas.EventMachineActionCompleted, schemas.MachineActionCompletedData{ActionID: "act-2", Machine: "m1",
			Command: "increment", Plugin: "incrementer", Status: schemas.ActionFailed, Error: sampleError(), DurationMs: 0}},
		{"alert fired", schemas.EventAlertFired, sampleAlert(false)},
		{"alert resolved", schemas.EventAlertResolved, sampleAlert(true)},
		{"plugin registered", schemas.EventPluginRegistered, schemas.PluginRegisteredData{Name: "incrementer", Version: "1.5.0", PreviousVersion: "1.4.2"}},
		{"plugin unregistered", schemas.EventPluginUnregistered, schemas.PluginUnregisteredData{Name: "incrementer", Version: "1.5.0", Forced: true}},
		{"plugin state changed", schemas.EventPluginStateChanged, schemas.PluginStateChangedData{Name: "incrementer", Version: "1.5.0",
			From: schemas.StateVerifying, To: schemas.StateError, Error: sampleError()}},
		{"plugin instance", schemas.APIPluginInstance, sampleHost().Plugins[1]},
		{"host", schemas.APIHost, sampleHost()},
		{"host ref", schemas.APIHostRef, schemas.HostRef{Name: "edge-1"}},
		{"host list request", schemas.APIHostListRequest, schemas.HostListRequest{State: schemas.HostLost}},
		{"host list request empty", schemas.APIHostListRequest, schemas.HostListRequest{}},
		{"host list response", schemas.APIHostListResponse, schemas.HostListResponse{Hosts: []schemas.Host{sampleHost()}}},
		{"host control", schemas.APIHostControl, sampleControl()},
		{"plugin host request", schemas.APIPluginHostRequest, schemas.PluginHostRequest{Name: "incrementer", Host: "edge-1"}},
		{"plugin host request every host", schemas.APIPluginHostRequest, schemas.PluginHostRequest{Name: "incrementer"}},
		{"plugin host response", schemas.APIPluginHostResponse, schemas.PluginHostResponse{Controls: []schemas.HostControl{sampleControl()}}},
		{"replay request from seq", schemas.APIPluginReplayRequest, schemas.PluginReplayRequest{Name: "notify-webhook", FromSeq: 42,
			Types: []string{schemas.TypeAlertFired}}},
		{"replay request from time", schemas.APIPluginReplayRequest, schemas.PluginReplayRequest{Name: "notify-webhook", FromTime: &t0}},
		{"replay status", schemas.APIReplayStatus, schemas.ReplayStatus{ID: "kQ3mVx2dY9pLr0sT8uWzAb", Plugin: "notify-webhook",
			Consumer: schemas.ReplayConsumerName("notify-webhook"), Types: []string{schemas.TypeAlertFired, schemas.TypeAlertResolved},
			FromTime: &t0, UntilSeq: 120, Total: 12, Replayed: 5, Remaining: 7, StartedAt: t1}},
		{"replay status nothing to replay", schemas.APIReplayStatus, schemas.ReplayStatus{Plugin: "incrementer",
			Types: []string{schemas.TypeJobDeployed}, FromSeq: 7, UntilSeq: 6, Done: true, StartedAt: t1}},
		{"replay notice", schemas.APIReplayNotice, schemas.ReplayNotice{ID: "kQ3mVx2dY9pLr0sT8uWzAb", Consumer: "replay_notify-webhook"}},
		{"log record", schemas.APILogRecord, schemas.LogRecord{Time: t0, Level: "info", Message: "consuming events", Stream: "stderr",
			Host: "edge-1", Plugin: "notify-webhook", Instance: "1", Fields: map[string]any{"consumer": "plugin_notify-webhook"}}},
		{"log record dropped", schemas.APILogRecord, schemas.LogRecord{Time: t0, Level: "warn", Message: "rate limit", Stream: "stdout",
			Host: "edge-1", Plugin: "noisy", Instance: "2", Dropped: 1200}},
		{"host state changed", schemas.EventHostStateChanged, schemas.HostStateChangedData{Name: "edge-1", From: schemas.HostUp, To: schemas.HostLost,
			Reason: "no heartbeat for 15s"}},
		{"hostd config", schemas.HostdConfigV1, map[string]any{"host": "edge-1", "labels": map[string]string{"zone": "a"},
			"nats_url": "nats://127.0.0.1:4222", "state_dir": "/var/lib/plugbus/hostd", "start_timeout": "30s", "log_rate": 100,
			"plugins": []any{map[string]any{"binary": "bin/plugins/incrementer", "instances": 2},
				map[string]any{"name": "notify-webhook", "binary": "/usr/bin/notify-webhook", "args": []string{"--log-level", "debug"},
					"env": map[string]string{"HTTPS_PROXY": "http://proxy:3128"}, "config": map[string]any{"url": "http://sink/alerts"}, "enabled": false}}}},
		{"creds request", schemas.APICredsRequest, schemas.CredsRequest{Name: "incrementer"}},
		{"host creds request", schemas.APIHostCredsRequest, schemas.HostCredsRequest{Name: "edge-1", Plugins: []string{"incrementer", "notify-webhook"}}},
		{"host creds request any", schemas.APIHostCredsRequest, schemas.HostCredsRequest{Name: "local", Plugins: []string{"*"}}},
		{"creds response", schemas.APICredsResponse, schemas.CredsResponse{Role: "plugin", Name: "incrementer", Creds: "-----BEGIN NATS USER JWT-----\n...",
			PublicKey: "UABC", IssuedAt: t0}},
		{"revoke response", schemas.APIRevokeResponse, schemas.RevokeResponse{Role: "plugin", Name: "incrementer", Revoked: 2}},
		{"identity issued", schemas.EventIdentityIssued, schemas.IdentityIssuedData{Role: "plugin", Name: "incrementer", PublicKey: "UABC", By: "host edge-1"}},
		{"stream read request", schemas.APIStreamReadRequest, schemas.StreamReadRequest{Stream: schemas.StreamEvents,
			Filters: []string{"plugbus.evt.job.v1.*", "plugbus.evt.alert.v1.fired"}, Last: 10, Since: &t0, Follow: true, Deliver: "_INBOX.abc123.1"}},
		{"stream read response", schemas.APIStreamReadResponse, schemas.StreamReadResponse{Consumer: "read_abc", Want: 10, StartSeq: 42, InactiveSeconds: 10}},
		{"stream stop request", schemas.APIStreamStopRequest, schemas.StreamStopRequest{Stream: schemas.StreamLogs, Consumer: "read_abc"}},
		{"stream stop response", schemas.APIStreamStopResponse, schemas.StreamStopResponse{Stopped: true}},
		{"identity revoked", schemas.EventIdentityRevoked, schemas.IdentityRevokedData{Role: "host", Name: "edge-1", Revoked: 1, PublicKeys: []string{"UABC"}}},
		{"stream read request from seq", schemas.APIStreamReadRequest, schemas.StreamReadRequest{Stream: schemas.StreamEvents,
			Last: 5, FromSeq: 1, Deliver: "_INBOX.abc123.2"}},
		{"alert list request", schemas.APIAlertListRequest, schemas.AlertListRequest{Status: schemas.AlertFiring}},
		{"alert list response", schemas.APIAlertListResponse, schemas.AlertListResponse{Alerts: []schemas.Alert{
			{ID: "disk-full", Severity: "critical", Summary: "disk full", Status: schemas.AlertResolved, FiredAt: t0, ResolvedAt: &t1}}}},
		{"event get request by seq", schemas.APIEventGetRequest, schemas.EventGetRequest{Seq: 42}},
		{"event get request by id", schemas.APIEventGetRequest, schemas.EventGetRequest{ID: "4JtR74Ob5zabNKRzNQlTP4"}},
		{"stored message", schemas.APIStoredMessage, sampleStored()},
		{"dlq list request", schemas.APIDLQListRequest, schemas.DLQListRequest{Consumer: "plugin_notify-webhook", Code: schemas.ReasonPermanent, FromSeq: 3, Limit: 100}},
		{"dlq list response", schemas.APIDLQListResponse, schemas.DLQListResponse{DeadLetters: []schemas.DeadLetter{sampleDeadLetter()}, NextSeq: 8, Pending: 12}},
		{"dlq ref", schemas.APIDLQRef, schemas.DLQRef{Seq: 7}},
		{"dead letter", schemas.APIDeadLetter, func() schemas.DeadLetter { d := sampleDeadLetter(); m := sampleStored(); d.Message = &m; return d }()},
		{"dlq replay", schemas.APIDLQReplayRecord, sampleReplay()},
		{"dlq replay request", schemas.APIDLQReplayRequest, schemas.DLQReplayRequest{Seqs: []uint64{7, 8}, RequestedBy: "ops@h1"}},
		{"dlq replay response", schemas.APIDLQReplayResponse, schemas.DLQReplayResponse{Results: []schemas.DLQReplayResult{
			{Seq: 7, Consumer: "plugin_notify-webhook", EventID: "ev1", Status: schemas.ReplayReplayed, Replay: func() *schemas.DLQReplay { r := sampleReplay(); return &r }()},
			{Seq: 9, Status: schemas.ReplayFailed, Error: &schemas.Error{Code: schemas.CodeNotFound, Message: "no dead letter 9"}}}}},
		{"dlq purge request seqs", schemas.APIDLQPurgeRequest, schemas.DLQPurgeRequest{Seqs: []uint64{1, 2}}},
		{"dlq purge request consumer", schemas.APIDLQPurgeRequest, schemas.DLQPurgeRequest{Consumer: "plugin_notify-webhook"}},
		{"dlq purge request all", schemas.APIDLQPurgeRequest, schemas.DLQPurgeRequest{All: true}},
		{"dlq purge response", schemas.APIDLQPurgeResponse, schemas.DLQPurgeResponse{Purged: 3}},
		{"alertmanager webhook", schemas.APIAlertmanagerWebhook, schemas.AlertmanagerWebhook{Version: "4", GroupKey: `{}:{alertname="DiskFull"}`,
			Status: "firing", Receiver: "plugbus", GroupLabels: map[string]string{"alertname": "DiskFull"},
			CommonLabels: map[string]string{"alertname": "DiskFull", "severity": "critical"}, ExternalURL: "http://alertmanager:9093",
			Alerts: []schemas.AlertmanagerAlert{{Status: "firing", Labels: map[string]string{"alertname": "DiskFull", "severity": "critical", "instance": "m1"},
				Annotations: map[string]string{"summary": "disk full on m1"}, StartsAt: t0, EndsAt: t1, GeneratorURL: "http://prometheus:9090/graph",
				Fingerprint: "5a8c2f0d4e1b9a37"}}}},
		{"alert intake request", schemas.APIAlertIntakeRequest, schemas.AlertIntakeRequest{Alerts: []schemas.AlertIntakeItem{
			{ID: "disk-full.m1", Severity: "critical", Summary: "disk full on m1", Labels: map[string]string{"machine": "m1"}, StartsAt: &t0},
			{ID: "cpu-hot.m2", Status: schemas.IntakeResolved}}}},
		{"alert intake response", schemas.APIAlertIntakeResponse, schemas.AlertIntakeResponse{Alerts: []schemas.AlertIntakeResult{
			{ID: "disk-full.m1", Status: schemas.IntakeFiring, Result: schemas.IntakeFired, EventID: "5Bz1vYt0QeW4d2cVq8nL3a"},
			{ID: "cpu-hot.m2", Status: schemas.IntakeResolved, Result: schemas.IntakeFailed, Error: &schemas.Error{Code: schemas.CodeTimeout, Message: "timed out"}}}}},
	}, actionSamples()...)
}

func sampleStored() schemas.StoredMessage {
	return schemas.StoredMessage{Stream: schemas.StreamEvents, Seq: 42, Subject: "plugbus.evt.alert.v1.fired", Time: t0,
		Header: map[string][]string{"ce-id": {"ev1"}, "ce-type": {schemas.TypeAlertFired}}, Data: []byte(`{"id":"a"}`)}
}

func sampleDeadLetter() schemas.DeadLetter {
	r := sampleReplay()
	return schemas.DeadLetter{Seq: 7, Time: t1, Consumer: "plugin_notify-webhook", Stream: schemas.StreamEvents, StreamSeq: 42,
		Subject: "plugbus.evt.alert.v1.fired", Deliveries: 1, Cause: schemas.CauseTerminated, Code: schemas.ReasonPermanent,
		Reason: "permanent_failure: 410 Gone", EventID: "ev1", EventType: schemas.TypeAlertFired, EventSource: "/plugbus/broker",
		EventSubject: "alert/a", Replay: &r}
}

func sampleReplay() schemas.DLQReplay {
	return schemas.DLQReplay{DLQSeq: 7, Consumer: "plugin_notify-webhook", EventID: "ev1", ReplayedAt: t1, ReplayedBy: schemas.ReplayedByAdmin,
		RequestedBy: "ops@h1", Subject: "plugbus.evt.redeliver.plugin_notify-webhook.alert.v1.fired", EventSeq: 57}
}

func sampleHost() schemas.Host {
	code := 2
	return schemas.Host{Name: "edge-1", Labels: map[string]string{"zone": "a", "gpu": "yes"}, HostdVersion: "0.2.0",
		State: schemas.HostUp, StartedAt: t0, HeartbeatAt: t1, HeartbeatInterval: schemas.Duration(5 * time.Second),
		Plugins: []schemas.PluginInstance{
			{Plugin: "incrementer", Instance: "1", State: schemas.InstanceRunning, Binary: "/opt/plugbus/incrementer", Version: "1.0.0",
				PID: 4242, Restarts: 1, StartedAt: &t1},
			{Plugin: "notify-webhook", Instance: "1", State: schemas.InstanceFailed, Restarts: 5,
				LastExit:   &schemas.InstanceExit{Cause: "exited", Code: &code, Time: t1, Reason: "exit status 2"},
				StderrTail: []string{"panic: no url"}, Reason: "5 failures within 1m0s"},
			{Plugin: "gpu-only", Instance: "1", State: schemas.InstanceNotPlaced, Reason: "needs component cuda"},
		}}
}

func sampleControl() schemas.HostControl {
	off := false
	return schemas.HostControl{Host: "edge-1", Plugin: "incrementer", Enabled: &off, Restart: "r-3", UpdatedAt: t0}
}
