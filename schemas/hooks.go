package schemas

import (
	"encoding/json"
	"regexp"
	"time"
)

// Hook points: places where the core asks plugins before or while it acts.
const (
	// HookJobPreDeploy validates or changes a job spec before it is
	// deployed, or rejects it. Payload: JobDeployRequest.
	HookJobPreDeploy = "job.pre_deploy"
	// HookJobRuntimeEnv collects env vars for a job (merged in chain order).
	// Payload: JobDeployRequest (after pre_deploy).
	HookJobRuntimeEnv = "job.runtime_env"
	// HookJobDockerfileInjection collects Dockerfile fragments (concatenated
	// in chain order, each labelled with its plugin). Payload: JobDeployRequest.
	HookJobDockerfileInjection = "job.dockerfile_injection"
	// HookJobBootstrapInjection collects bootstrap script fragments, like
	// the Dockerfile injection. Payload: JobDeployRequest.
	HookJobBootstrapInjection = "job.bootstrap_injection"
	// HookJobPreDelete may refuse a job deletion. Payload: Job.
	HookJobPreDelete = "job.pre_delete"
	// HookMachinePreAction may change an action's params or refuse it.
	// Payload: MachineActionRequest (plugin set to the routed plugin).
	HookMachinePreAction = "machine.pre_action"
	// HookAlertPreNotify may add labels to an alert or suppress it.
	// Payload: AlertFireRequest (id set).
	HookAlertPreNotify = "alert.pre_notify"
)

// HookPoints lists every hook point in the order the core runs them for a
// deploy, then the others.
var HookPoints = []string{
	HookJobPreDeploy, HookJobRuntimeEnv, HookJobDockerfileInjection, HookJobBootstrapInjection,
	HookJobPreDelete, HookMachinePreAction, HookAlertPreNotify,
}

// Hook kinds decide what a step may return and the default failure policy.
const (
	// HookKindGate hooks (pre_*) may continue, change the payload or reject;
	// their default failure policy is "fail".
	HookKindGate = "gate"
	// HookKindEnv hooks return env vars; default policy "ignore".
	HookKindEnv = "env"
	// HookKindInjection hooks return a text fragment; default policy "ignore".
	HookKindInjection = "injection"
)

// HookKind returns the kind of a hook point, "" for an unknown one.
func HookKind(hook string) string {
	switch hook {
	case HookJobPreDeploy, HookJobPreDelete, HookMachinePreAction, HookAlertPreNotify:
		return HookKindGate
	case HookJobRuntimeEnv:
		return HookKindEnv
	case HookJobDockerfileInjection, HookJobBootstrapInjection:
		return HookKindInjection
	}
	return ""
}

// DefaultHookTimeout is a hook step's timeout when its spec sets none.
const DefaultHookTimeout = 5 * time.Second

// DefaultFailurePolicy returns the failure policy of a hook point when a
// spec sets none: "fail" for gates, "ignore" for collecting hooks.
func DefaultFailurePolicy(hook string) string {
	if HookKind(hook) == HookKindGate {
		return FailurePolicyFail
	}
	return FailurePolicyIgnore
}

// HookRequest is what a hook step receives (schema api/v1/hook_request.json).
type HookRequest struct {
	// Hook is the hook point.
	Hook string `json:"hook"`
	// ChainID identifies the chain run; every step of one run sees the same id.
	ChainID string `json:"chain_id"`
	// Object names what the chain is about: "job/NAME", "machine/NAME", "alert/ID".
	Object string `json:"object"`
	// Step is this step's position in the chain (0-based).
	Step int `json:"step"`
	// Payload is the document the hook point is about, with the changes of
	// earlier steps applied (see the hook point constants for its type).
	Payload json.RawMessage `json:"payload"`
	// Env holds the env vars collected so far (job.runtime_env only).
	Env map[string]string `json:"env,omitempty"`
}

// Hook step outcomes a plugin returns.
const (
	// HookContinue lets the chain go on, with Patch applied when set.
	HookContinue = "continue"
	// HookReject stops a gate chain: the operation is refused with Reason
	// (for alert.pre_notify: the alert is suppressed).
	HookReject = "reject"
)

// HookResponse is what a hook step returns (schema api/v1/hook_response.json).
type HookResponse struct {
	// Outcome is "continue" (default when empty) or "reject".
	Outcome string `json:"outcome,omitempty"`
	// Patch is a JSON merge patch (RFC 7396) applied to the payload that
	// the next steps and the core see (gate hooks).
	Patch json.RawMessage `json:"patch,omitempty"`
	// Reason explains a rejection; it is returned to the caller.
	Reason string `json:"reason,omitempty"`
	// Code is an optional error code for a rejection (default "rejected").
	Code string `json:"code,omitempty"`
	// Env are env vars to add (job.runtime_env).
	Env map[string]string `json:"env,omitempty"`
	// Fragment is a text fragment to inject (job.*_injection).
	Fragment string `json:"fragment,omitempty"`
}

// Step outcomes recorded in a chain record.
const (
	StepContinued  = "continued"
	StepPatched    = "patched"
	StepRejected   = "rejected"
	StepFailed     = "failed"      // error, timeout or no responder under policy "fail"
	StepIgnored    = "ignored"     // error, timeout or no responder under policy "ignore"
	StepSkipped    = "skipped"     // the plugin is not ACTIVE
	StepNotReached = "not_reached" // an earlier step stopped the chain
	ChainCompleted = "completed"   // every step ran (or was skipped/ignored)
	ChainRejected  = "rejected"    // a step rejected
	ChainFailed    = "failed"      // a step failed under policy "fail", or the outputs conflict
	ChainNoSteps   = "empty"       // no plugin implements the hook
	// ChainRunning (chains.go) is the outcome chains.get reports for a
	// chain not finished yet.
)

// HookStep is one step of a chain as it will run (busctl hooks ls).
type HookStep struct {
	Plugin        string      `json:"plugin"`
	Version       string      `json:"version"`
	Priority      int         `json:"priority"`
	Timeout       Duration    `json:"timeout"`
	FailurePolicy string      `json:"failure_policy"`
	WhenInactive  string      `json:"when_inactive"`
	Override      bool        `json:"override,omitempty"`
	State         PluginState `json:"state"`
	// After and Before are the step's ordering constraints, as its
	// manifest declares them.
	After  []string `json:"after,omitempty"`
	Before []string `json:"before,omitempty"`
	// Reason says why the step is where it is: "priority 10", "priority
	// 10, ties by plugin name", "after policy (policy: before audit)", ….
	Reason string `json:"reason,omitempty"`
}

// What a chain does with a step whose plugin is not ACTIVE (HookSpec's
// when_inactive).
const (
	WhenInactiveFail = "fail"
	WhenInactiveSkip = "skip"
)

// DefaultWhenInactive is a step's when_inactive when its manifest gives
// none: gates that fail closed stay closed while their plugin is down.
func DefaultWhenInactive(failurePolicy string) string {
	if failurePolicy == FailurePolicyFail {
		return WhenInactiveFail
	}
	return WhenInactiveSkip
}

// HookChain is the ordered steps of one hook point.
type HookChain struct {
	Hook  string     `json:"hook"`
	Steps []HookStep `json:"steps"`
}

// HookListRequest asks for the chains as they will run; Hook narrows to one.
type HookListRequest struct {
	Hook string `json:"hook,omitempty"`
}

// HookListResponse answers HookListRequest, hook points in HookPoints order.
type HookListResponse struct {
	Chains []HookChain `json:"chains"`
}

// StepRecord is what happened at one step of a chain run.
type StepRecord struct {
	Plugin        string  `json:"plugin"`
	Priority      int     `json:"priority"`
	FailurePolicy string  `json:"failure_policy"`
	Outcome       string  `json:"outcome"`
	DurationMs    float64 `json:"duration_ms"`
	// Reason is a rejection's reason.
	Reason string `json:"reason,omitempty"`
	// Error is what went wrong for failed, ignored and skipped steps.
	Error *Error `json:"error,omitempty"`
	// Env lists the env keys this step added (job.runtime_env).
	EnvKeys []string `json:"env_keys,omitempty"`
	// Replayed says the step's answer came from the chain journal: an
	// earlier run of the chain, cut short by a broker crash, had it, and
	// the plugin was not called again.
	Replayed bool `json:"replayed,omitempty"`
}

// ChainRecord is one chain run, returned to the caller and published as
// io.plugbus.hook.v1.chain_completed.
type ChainRecord struct {
	ID         string       `json:"id"`
	Hook       string       `json:"hook"`
	Object     string       `json:"object"`
	Outcome    string       `json:"outcome"`
	StartedAt  time.Time    `json:"started_at"`
	DurationMs float64      `json:"duration_ms"`
	Steps      []StepRecord `json:"steps"`
	// Error is why the chain was rejected or failed.
	Error *Error `json:"error,omitempty"`
	// Resumed says the run was continued from the chain journal after the
	// broker running it stopped mid-chain (see StepRecord.Replayed).
	Resumed bool `json:"resumed,omitempty"`
}

// EnvKeyPattern is the rule for environment variable names: the env_key
// pattern of api/v1/definitions.json (a test keeps the two equal).
const EnvKeyPattern = `^[A-Za-z_][A-Za-z0-9_]*$`

var envKeyRE = regexp.MustCompile(EnvKeyPattern)

// ValidEnvKey reports whether k is a valid environment variable name.
func ValidEnvKey(k string) bool { return envKeyRE.MatchString(k) }
