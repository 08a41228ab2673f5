package schemas

import (
	"encoding/json"
	"strings"
	"time"
)

// TypePrefix is the reverse-DNS prefix of every core CloudEvent type.
const TypePrefix = "io.plugbus."

// Core CloudEvent types. The version is part of the type and of the subject.
const (
	TypeJobDeployed            = "io.plugbus.job.v1.deployed"
	TypeJobDeleted             = "io.plugbus.job.v1.deleted"
	TypeMachineActionRequested = "io.plugbus.machine.v1.action_requested"
	TypeMachineActionCompleted = "io.plugbus.machine.v1.action_completed"
	TypeAlertFired             = "io.plugbus.alert.v1.fired"
	TypeAlertResolved          = "io.plugbus.alert.v1.resolved"
	TypePluginRegistered       = "io.plugbus.plugin.v1.registered"
	TypePluginStateChanged     = "io.plugbus.plugin.v1.state_changed"
	TypePluginUnregistered     = "io.plugbus.plugin.v1.unregistered"
	TypeHookChainCompleted     = "io.plugbus.hook.v1.chain_completed"
)

// CoreEventTypes lists every core event type, in a stable order.
var CoreEventTypes = []string{
	TypeJobDeployed, TypeJobDeleted,
	TypeMachineActionRequested, TypeMachineActionProgress, TypeMachineActionCompleted,
	TypeAlertFired, TypeAlertResolved,
	TypePluginRegistered, TypePluginStateChanged, TypePluginUnregistered,
	TypeHookChainCompleted,
	TypeHostStateChanged,
	TypeIdentityIssued, TypeIdentityRevoked,
}

// SchemaBase is the base of every schema $id.
const SchemaBase = "https://plugbus.io/schemas/"

// EventSchemaID returns the $id of the data schema of a core event type:
// io.plugbus.job.v1.deployed -> https://plugbus.io/schemas/events/job/v1/deployed.json.
func EventSchemaID(eventType string) string {
	return SchemaBase + EventSchemaPath(eventType)
}

// EventSchemaPath returns the schema file path of a core event type relative
// to the schemas folder: events/job/v1/deployed.json.
func EventSchemaPath(eventType string) string {
	rest := strings.TrimPrefix(eventType, TypePrefix)
	return "events/" + strings.ReplaceAll(rest, ".", "/") + ".json"
}

// JobDeployedData is the data of io.plugbus.job.v1.deployed.
type JobDeployedData struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Image   string `json:"image"`
	// Env is the job's env after the job.runtime_env chain merged the
	// plugins' vars into the requested ones.
	Env    map[string]string `json:"env,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// DockerfileInjection and BootstrapInjection are the fragments the
	// injection chains collected, each block labelled with its plugin.
	DockerfileInjection string `json:"dockerfile_injection,omitempty"`
	BootstrapInjection  string `json:"bootstrap_injection,omitempty"`
	// ChainIDs are the ids of the hook chain runs of this deploy (each
	// published as io.plugbus.hook.v1.chain_completed).
	ChainIDs   []string  `json:"chain_ids,omitempty"`
	DeployedAt time.Time `json:"deployed_at"`
}

// JobDeletedData is the data of io.plugbus.job.v1.deleted.
type JobDeletedData struct {
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Image     string    `json:"image,omitempty"`
	DeletedAt time.Time `json:"deleted_at"`
}

// MachineActionRequestedData is the data of io.plugbus.machine.v1.action_requested.
type MachineActionRequestedData struct {
	ActionID string         `json:"action_id"`
	Machine  string         `json:"machine"`
	Command  string         `json:"command"`
	Plugin   string         `json:"plugin"`
	Params   map[string]any `json:"params,omitempty"`
}

// Action outcomes in MachineActionCompletedData.Status.
const (
	ActionSucceeded = "succeeded"
	ActionFailed    = "failed"
)

// MachineActionCompletedData is the data of io.plugbus.machine.v1.action_completed.
type MachineActionCompletedData struct {
	ActionID   string          `json:"action_id"`
	Machine    string          `json:"machine"`
	Command    string          `json:"command"`
	Plugin     string          `json:"plugin"`
	Status     string          `json:"status"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *Error          `json:"error,omitempty"`
	DurationMs float64         `json:"duration_ms"`
}

// Alert severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Alert statuses.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
	// AlertSuppressed: an alert.pre_notify step suppressed it; no fired
	// event was published.
	AlertSuppressed = "suppressed"
)

// Alert is an alert as stored and as carried by io.plugbus.alert.v1.fired and
// io.plugbus.alert.v1.resolved.
type Alert struct {
	ID         string            `json:"id"`
	Severity   string            `json:"severity"`
	Summary    string            `json:"summary"`
	Labels     map[string]string `json:"labels,omitempty"`
	Status     string            `json:"status"`
	FiredAt    time.Time         `json:"fired_at"`
	ResolvedAt *time.Time        `json:"resolved_at,omitempty"`
}

// PluginRegisteredData is the data of io.plugbus.plugin.v1.registered.
type PluginRegisteredData struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version,omitempty"`
}

// PluginUnregisteredData is the data of io.plugbus.plugin.v1.unregistered.
type PluginUnregisteredData struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Forced is true when instances were still running.
	Forced bool `json:"forced,omitempty"`
}

// PluginStateChangedData is the data of io.plugbus.plugin.v1.state_changed.
type PluginStateChangedData struct {
	Name    string      `json:"name"`
	Version string      `json:"version"`
	From    PluginState `json:"from"`
	To      PluginState `json:"to"`
	Error   *Error      `json:"error,omitempty"`
}
