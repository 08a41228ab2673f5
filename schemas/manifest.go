package schemas

import "encoding/json"

// Manifest describes a plugin: who it is, the events it consumes, the actions
// it offers and the configuration it needs. It is validated against
// manifest/v1/manifest.json before the broker accepts a registration.
type Manifest struct {
	// Name identifies the plugin on the bus: lower-case letters, digits and
	// dashes, starting with a letter (it appears in subjects and consumer names).
	Name string `json:"name"`
	// Version is the plugin's version; a registration with a new version
	// replaces the old one without losing events.
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url,omitempty"`
	// Category is free text such as "infrastructure", "notification", "core".
	Category string `json:"category,omitempty"`
	// Priority orders the plugin in hook chains: lowest runs first (default 0).
	Priority int `json:"priority,omitempty"`
	// Components lists the host components the plugin should run on (hostd).
	Components []string `json:"components,omitempty"`
	// Events, when set, makes the broker create a durable consumer for the
	// plugin on the event stream.
	Events *EventSubscription `json:"events,omitempty"`
	// Hooks lists the hook points the plugin implements.
	Hooks []HookSpec `json:"hooks,omitempty"`
	// Actions lists the commands the plugin offers on object models.
	Actions []ActionSpec `json:"actions,omitempty"`
	// RequiredParams are config keys that must be set before the plugin is
	// configured; the broker enforces them.
	RequiredParams []string `json:"required_params,omitempty"`
	// ConfigSchema is a JSON Schema (2020-12) that the plugin's config must
	// satisfy; the broker validates config against it before the plugin sees it.
	ConfigSchema json.RawMessage `json:"config_schema,omitempty"`
}

// Start positions accepted in EventSubscription.Start besides an RFC 3339
// time and a duration.
const (
	// StartNew delivers only events published after the consumer is created.
	StartNew = "new"
	// StartAll replays every event still held in the stream.
	StartAll = "all"
)

// EventSubscription declares which core event types a plugin consumes and how
// they are delivered to it.
type EventSubscription struct {
	// Types are CloudEvent types such as "io.plugbus.alert.v1.fired". A
	// trailing ".*" matches every type under that prefix at one level
	// ("io.plugbus.alert.v1.*").
	Types []string `json:"types"`
	// AckWait is how long a delivery may stay unacknowledged before it is
	// redelivered (default 30s).
	AckWait Duration `json:"ack_wait,omitempty"`
	// MaxDeliver is how many times an event is delivered before it is
	// dead-lettered (default 5).
	MaxDeliver int `json:"max_deliver,omitempty"`
	// Backoff lists the redelivery delays after a failed attempt; the last one
	// repeats.
	Backoff []Duration `json:"backoff,omitempty"`
	// Start is where the plugin's consumer begins when it is first created
	// (a new plugin): "new" (default, only events published from then on),
	// "all" (every event the stream still holds), an RFC 3339 time (the
	// events stored from then on), or a duration such as "24h" (the events
	// of that long before the consumer is created). It has no effect on an
	// existing consumer, which keeps its place across registrations; see
	// StartPoint, and the replay API (PluginReplayRequest) to go back later.
	Start string `json:"start,omitempty"`
}

// Failure policies of a hook step.
const (
	FailurePolicyFail   = "fail"
	FailurePolicyIgnore = "ignore"
)

// HookSpec declares one hook point that a plugin implements.
type HookSpec struct {
	// Hook is the hook point, such as "job.pre_deploy".
	Hook string `json:"hook"`
	// Priority overrides the plugin's priority for this hook.
	Priority *int `json:"priority,omitempty"`
	// Timeout bounds one call of this step (default 5s, at most 30s).
	Timeout Duration `json:"timeout,omitempty"`
	// FailurePolicy is "fail" or "ignore".
	FailurePolicy string `json:"failure_policy,omitempty"`
	// WhenInactive is what the chain does while the plugin is not ACTIVE:
	// WhenInactiveFail refuses the operation, WhenInactiveSkip skips the
	// step (default: fail with the fail policy, skip with ignore).
	WhenInactive string `json:"when_inactive,omitempty"`
	// Override lets this plugin overwrite env keys set by earlier steps
	// (job.runtime_env).
	Override bool `json:"override,omitempty"`
	// After names plugins whose step on this hook point must run before
	// this one, Before plugins whose step must run after it. They refine
	// the priority order; a constraint on a plugin that is not in the
	// chain has no effect. A registration that would make a cycle is
	// refused.
	After  []string `json:"after,omitempty"`
	Before []string `json:"before,omitempty"`
}

// ActionSpec declares a command a plugin performs on an object model, as
// Digital Rebar's AvailableAction does.
type ActionSpec struct {
	// Command is the action's name, such as "increment".
	Command string `json:"command"`
	// Model is the object model the action applies to, such as "machines";
	// empty means a system-level action.
	Model       string `json:"model,omitempty"`
	Description string `json:"description,omitempty"`
	// RequiredParams must be present (in the call's params or on the object)
	// or the broker refuses the call.
	RequiredParams []string `json:"required_params,omitempty"`
	// OptionalParams are filled in from the object's params when the call
	// does not give them.
	OptionalParams []string `json:"optional_params,omitempty"`
	// Timeout bounds the action, from the moment the broker routes it to
	// the plugin's completion report (at most [MaxActionTimeout]; zero:
	// the broker's action timeout, 30s by default). An action that runs
	// past it is recorded failed with code timeout and its handler's
	// context is cancelled.
	Timeout Duration `json:"timeout,omitempty"`
}
