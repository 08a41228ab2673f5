package schemas

import "time"

// PluginState is where a plugin is in its lifecycle:
// REGISTERED → INITIALIZING → CONFIGURING → VERIFYING → ACTIVE, with ERROR on
// any failure and STALE when no instance answers.
type PluginState string

// Plugin lifecycle states.
const (
	StateRegistered   PluginState = "REGISTERED"
	StateInitializing PluginState = "INITIALIZING"
	StateConfiguring  PluginState = "CONFIGURING"
	StateVerifying    PluginState = "VERIFYING"
	StateActive       PluginState = "ACTIVE"
	StateError        PluginState = "ERROR"
	StateStale        PluginState = "STALE"
)

// PluginRecord is a plugin as the registry holds it (KV bucket of plugins,
// key = plugin name).
type PluginRecord struct {
	Name     string      `json:"name"`
	Version  string      `json:"version"`
	State    PluginState `json:"state"`
	Manifest Manifest    `json:"manifest"`
	// LastError is the error that put the plugin in ERROR (kept until the
	// next successful lifecycle run).
	LastError *Error `json:"last_error,omitempty"`
	// Metadata is what the plugin returned from init.
	Metadata map[string]any `json:"metadata,omitempty"`
	// Config is the plugin's current, validated configuration.
	Config map[string]any `json:"config,omitempty"`
	// Consumer is the name of the plugin's durable consumer on the event
	// stream, when it consumes events.
	Consumer     string    `json:"consumer,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// ConsumerName returns the durable consumer name of a plugin.
func ConsumerName(plugin string) string { return "plugin_" + plugin }
