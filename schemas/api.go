package schemas

import (
	"encoding/json"
	"time"
)

// Broker API endpoints, relative to "<prefix>.api.". Each takes the request
// type and answers with the response type named in its comment.
const (
	APIPluginsRegister   = "plugins.register"   // RegisterRequest → RegisterResponse; the subject ends with the plugin's name (wire.PluginAPISubject)
	APIPluginsList       = "plugins.list"       // PluginListRequest → PluginListResponse
	APIPluginsGet        = "plugins.get"        // PluginGetRequest → PluginRecord
	APIPluginsConfig     = "plugins.config"     // PluginConfigRequest → PluginRecord
	APIPluginsUnregister = "plugins.unregister" // PluginUnregisterRequest → PluginRecord (the removed one); the subject ends with the plugin's name
	APIJobsDeploy        = "jobs.deploy"        // JobDeployRequest → JobResponse
	APIJobsDelete        = "jobs.delete"        // JobRef → JobResponse
	APIJobsList          = "jobs.list"          // JobListRequest → JobListResponse
	APIJobsGet           = "jobs.get"           // JobRef → Job
	APIMachinesAction    = "machines.action"    // MachineActionRequest → MachineActionResponse
	APIMachinesGet       = "machines.get"       // MachineRef → Machine
	APIMachinesList      = "machines.list"      // MachineListRequest → MachineListResponse
	APIMachinesSetParam  = "machines.set-param" // MachineSetParamRequest → Machine
	APIAlertsFire        = "alerts.fire"        // AlertFireRequest → AlertResponse
	APIAlertsResolve     = "alerts.resolve"     // AlertRef → AlertResponse
	APIHooksList         = "hooks.list"         // HookListRequest → HookListResponse
)

// Plugin control verbs, answered by every plugin instance on
// "<prefix>.plugin.<name>.<verb>" in a queue group.
const (
	VerbInit   = "init"   // InitRequest → InitResponse
	VerbConfig = "config" // ConfigRequest → ConfigResponse
	VerbVerify = "verify" // VerifyRequest → VerifyResponse
	VerbAction = "action" // ActionRequest → ActionResponse
)

// Headers used on plugbus replies and messages. NATS header names are
// case-sensitive; these are the exact names.
const (
	// HeaderErrorCode carries the error code on an error reply (the NATS
	// micro convention, so `nats req` shows it).
	HeaderErrorCode = "Nats-Service-Error-Code"
	// HeaderError carries the error message on an error reply.
	HeaderError = "Nats-Service-Error"
)

// RegisterRequest registers (or re-registers) a plugin instance.
type RegisterRequest struct {
	Manifest Manifest `json:"manifest"`
	// InstanceID identifies the registering process (its micro service id).
	InstanceID string `json:"instance_id,omitempty"`
	// Config is an initial configuration the instance was started with; it is
	// used only when the registry holds no config for the plugin yet.
	Config map[string]any `json:"config,omitempty"`
}

// RegisterResponse answers RegisterRequest.
type RegisterResponse struct {
	Plugin PluginRecord `json:"plugin"`
	// Changed is false when the same manifest was already registered.
	Changed bool `json:"changed"`
}

// MaxPluginPage bounds plugins.list's limit.
const MaxPluginPage = 1000

// PluginListRequest asks for the registered plugins, sorted by name, one
// page at a time: those named after After (from the first when empty), at
// most Limit of them (MaxPluginPage when 0). A page also ends early where
// the next record would take the reply over the NATS max payload. Follow
// PluginListResponse.NextAfter for the rest.
type PluginListRequest struct {
	// State, when set, keeps only plugins in that state.
	State PluginState `json:"state,omitempty"`
	Limit int         `json:"limit,omitempty"`
	// After is the name the page starts after: the previous page's
	// NextAfter.
	After string `json:"after,omitempty"`
}

// PluginListResponse answers PluginListRequest, sorted by name.
type PluginListResponse struct {
	Plugins []PluginRecord `json:"plugins"`
	// NextAfter, set when more plugins follow, is the After of the next
	// page.
	NextAfter string `json:"next_after,omitempty"`
}

// PluginGetRequest names one plugin.
type PluginGetRequest struct {
	Name string `json:"name"`
}

// PluginUnregisterRequest removes a plugin: its record, config and durable
// consumer. It is refused while an instance still answers, unless Force.
type PluginUnregisterRequest struct {
	Name  string `json:"name"`
	Force bool   `json:"force,omitempty"`
}

// PluginConfigRequest reads (Set empty) or changes a plugin's config. Set
// keys are merged over the current config; the result is validated against
// the plugin's required params and config schema, stored, and pushed to
// every running instance.
type PluginConfigRequest struct {
	Name string         `json:"name"`
	Set  map[string]any `json:"set,omitempty"`
}

// InitRequest is sent to a plugin when it is registered.
type InitRequest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// InitResponse returns the plugin's metadata (stored on its record).
type InitResponse struct {
	Metadata map[string]any `json:"metadata,omitempty"`
}

// ConfigRequest delivers a validated configuration to a plugin.
type ConfigRequest struct {
	Config map[string]any `json:"config"`
}

// ConfigResponse acknowledges a configuration.
type ConfigResponse struct{}

// VerifyRequest asks a plugin whether it is ready to work.
type VerifyRequest struct{}

// VerifyResponse says whether the plugin is ready; Message explains a no.
type VerifyResponse struct {
	Ready   bool   `json:"ready"`
	Message string `json:"message,omitempty"`
}

// ActionRequest is an action routed to a plugin.
type ActionRequest struct {
	ActionID string `json:"action_id"`
	Command  string `json:"command"`
	Model    string `json:"model,omitempty"`
	// Object names the object the action applies to (a machine name).
	Object string `json:"object,omitempty"`
	// Params are the call's params with optional params filled in from the
	// object; required params are guaranteed present.
	Params map[string]any `json:"params,omitempty"`
	// Async says the plugin may accept the action instead of answering
	// with its result (ActionResponse.Accepted), then report progress and
	// completion on actions.progress and actions.complete (schemas
	// APIActionsProgress, APIActionsComplete).
	Async bool `json:"async,omitempty"`
	// Timeout is the action's timeout and Deadline when it runs out; the
	// plugin's work on the action should stop then (the broker records it
	// failed with code timeout).
	Timeout  Duration   `json:"timeout,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"`
}

// ActionResponse carries a plugin's result, or says that it accepted the
// action and will report its completion later (an Async request only).
type ActionResponse struct {
	Result json.RawMessage `json:"result,omitempty"`
	// Accepted: the plugin works on the action and reports its completion
	// on actions.complete.
	Accepted bool `json:"accepted,omitempty"`
	// Instance is the plugin instance that took the action.
	Instance string `json:"instance,omitempty"`
}

// Job is a deployed (or deleted) job as the registry holds it.
type Job struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Image   string `json:"image"`
	// Env is the requested env merged with what job.runtime_env added.
	Env    map[string]string `json:"env,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// DockerfileInjection and BootstrapInjection are what the injection
	// chains collected.
	DockerfileInjection string     `json:"dockerfile_injection,omitempty"`
	BootstrapInjection  string     `json:"bootstrap_injection,omitempty"`
	Status              string     `json:"status"`
	DeployedAt          time.Time  `json:"deployed_at"`
	DeletedAt           *time.Time `json:"deleted_at,omitempty"`
}

// Job statuses.
const (
	JobDeployed = "deployed"
	JobDeleted  = "deleted"
)

// JobDeployRequest deploys a job.
type JobDeployRequest struct {
	Name    string            `json:"name"`
	Version string            `json:"version"`
	Image   string            `json:"image"`
	Env     map[string]string `json:"env,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// JobRef names one job version.
type JobRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// JobResponse answers deploy and delete with the job and the id of the
// event published.
type JobResponse struct {
	Job     Job    `json:"job"`
	EventID string `json:"event_id"`
	// Chains are the hook chain runs of the operation, in run order.
	Chains []ChainRecord `json:"chains,omitempty"`
}

// JobListRequest asks for every job.
type JobListRequest struct{}

// JobListResponse answers JobListRequest, sorted by name then version.
type JobListResponse struct {
	Jobs []Job `json:"jobs"`
}

// Machine is an object that actions apply to, with its params.
type Machine struct {
	Name      string         `json:"name"`
	Params    map[string]any `json:"params"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// MachineRef names one machine.
type MachineRef struct {
	Name string `json:"name"`
}

// MachineListRequest asks for every machine.
type MachineListRequest struct{}

// MachineListResponse answers MachineListRequest, sorted by name.
type MachineListResponse struct {
	Machines []Machine `json:"machines"`
}

// MachineSetParamRequest sets one param on a machine (creating the machine
// if needed). A null Value deletes the param.
type MachineSetParamRequest struct {
	Machine string `json:"machine"`
	Param   string `json:"param"`
	Value   any    `json:"value"`
}

// MachineActionRequest runs an action on a machine.
type MachineActionRequest struct {
	Machine string         `json:"machine"`
	Command string         `json:"command"`
	Params  map[string]any `json:"params,omitempty"`
	// Plugin selects the plugin when several offer the command.
	Plugin string `json:"plugin,omitempty"`
	// NoWait answers once the plugin has taken the action (status running)
	// instead of when it ends; follow it with actions.get.
	NoWait bool `json:"no_wait,omitempty"`
}

// MachineActionResponse answers MachineActionRequest with the plugin's result.
type MachineActionResponse struct {
	ActionID string `json:"action_id"`
	Machine  string `json:"machine"`
	Command  string `json:"command"`
	Plugin   string `json:"plugin"`
	// Status is the action's status when the reply was sent: succeeded,
	// or with NoWait also pending or running (ActionRecord.Status).
	Status string          `json:"status,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	// Chains are the hook chain runs of the action (machine.pre_action).
	Chains []ChainRecord `json:"chains,omitempty"`
}

// AlertFireRequest fires an alert. An empty ID gets a generated one; firing
// an ID that is already firing updates it.
type AlertFireRequest struct {
	ID       string            `json:"id,omitempty"`
	Severity string            `json:"severity"`
	Summary  string            `json:"summary"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// AlertRef names one alert.
type AlertRef struct {
	ID string `json:"id"`
}

// AlertResponse answers fire and resolve.
type AlertResponse struct {
	Alert Alert `json:"alert"`
	// EventID is the fired or resolved event's id; empty when an
	// alert.pre_notify step suppressed the alert.
	EventID string `json:"event_id,omitempty"`
	// Chains are the hook chain runs (alert.pre_notify).
	Chains []ChainRecord `json:"chains,omitempty"`
}

// idempotentEndpoints are the mutating broker API endpoints whose replies
// the broker keeps for its idempotency window (the Idempotency-Key header,
// wire.HeaderIdempotencyKey). The credentials endpoints are not among
// them: their replies are secrets, and issuing again is harmless.
var idempotentEndpoints = map[string]bool{
	APIJobsDeploy: true, APIJobsDelete: true,
	APIMachinesAction: true, APIMachinesSetParam: true,
	APIAlertsFire: true, APIAlertsResolve: true,
	APIPluginsConfig: true, APIPluginsUnregister: true,
	APIPluginsEnable: true, APIPluginsDisable: true, APIPluginsRestart: true,
	APIPluginsRevoke: true, APIHostsRevoke: true,
	APIDLQReplay: true, APIDLQPurge: true,
	APIPluginsReplay: true, APIPluginsReplayCancel: true,
	APIActionsCancel: true,
}

// Idempotent reports whether a broker API endpoint takes an idempotency
// key: a repeat with the same key within the broker's idempotency window
// gets the first reply and changes nothing.
func Idempotent(endpoint string) bool { return idempotentEndpoints[endpoint] }
