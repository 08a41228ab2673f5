package schemas

import "time"

// Schema paths of the host daemon's documents.
const (
	APIPluginInstance     = "api/v1/plugin_instance.json"       // PluginInstance
	APIHost               = "api/v1/host.json"                  // Host
	APIHostRef            = "api/v1/host_ref.json"              // HostRef
	APIHostListRequest    = "api/v1/host_list_request.json"     // HostListRequest
	APIHostListResponse   = "api/v1/host_list_response.json"    // HostListResponse
	APIHostControl        = "api/v1/host_control.json"          // HostControl
	APIPluginHostRequest  = "api/v1/plugin_host_request.json"   // PluginHostRequest
	APIPluginHostResponse = "api/v1/plugin_host_response.json"  // PluginHostResponse
	APILogRecord          = "api/v1/log_record.json"            // LogRecord
	EventHostStateChanged = "events/host/v1/state_changed.json" // HostStateChangedData
	HostdConfigV1         = "hostd/v1/config.json"              // hostd's config file
)

// Broker API endpoints of hosts (see the API* endpoint constants).
const (
	APIHostsList      = "hosts.list"      // HostListRequest → HostListResponse
	APIHostsGet       = "hosts.get"       // HostRef → Host
	APIPluginsEnable  = "plugins.enable"  // PluginHostRequest (host required) → PluginHostResponse
	APIPluginsDisable = "plugins.disable" // PluginHostRequest (host required) → PluginHostResponse
	APIPluginsRestart = "plugins.restart" // PluginHostRequest (host optional: every host running it) → PluginHostResponse
)

// Broker API endpoints of identities. The plugin_creds endpoint takes the
// calling host's name as one more subject token
// (wire.HostAPISubject), so the server knows who asks.
const (
	APIPluginsCreds     = "plugins.creds"      // CredsRequest → CredsResponse (admin)
	APIPluginsRevoke    = "plugins.revoke"     // CredsRequest → RevokeResponse (admin)
	APIHostsCreds       = "hosts.creds"        // HostCredsRequest → CredsResponse (admin)
	APIHostsRevoke      = "hosts.revoke"       // CredsRequest → RevokeResponse (admin)
	APIHostsPluginCreds = "hosts.plugin_creds" // CredsRequest (the plugin) → CredsResponse (the host, for a plugin placed on it)
)

// TypeHostStateChanged is published when a host comes up, stops, or is
// marked LOST.
const TypeHostStateChanged = "io.plugbus.host.v1.state_changed"

// HostState is where a host is.
type HostState string

// Host states.
const (
	HostUp      HostState = "UP"
	HostLost    HostState = "LOST"
	HostStopped HostState = "STOPPED"
)

// InstanceState is where a plugin instance is on its host.
type InstanceState string

// Instance states. The first five are the supervisor's; the others say why
// hostd does not run an instance.
const (
	InstanceStarting  InstanceState = "STARTING"
	InstanceRunning   InstanceState = "RUNNING"
	InstanceBackoff   InstanceState = "BACKOFF"
	InstanceFailed    InstanceState = "FAILED"
	InstanceStopped   InstanceState = "STOPPED"
	InstanceDisabled  InstanceState = "DISABLED"
	InstanceNotPlaced InstanceState = "NOT_PLACED"
	InstanceInvalid   InstanceState = "INVALID"
	InstanceLost      InstanceState = "LOST"
)

// Host is a host as its hostd reports it (bucket BucketHosts, key = name).
type Host struct {
	Name              string            `json:"name"`
	Labels            map[string]string `json:"labels,omitempty"`
	HostdVersion      string            `json:"hostd_version,omitempty"`
	State             HostState         `json:"state"`
	StartedAt         time.Time         `json:"started_at"`
	HeartbeatAt       time.Time         `json:"heartbeat_at"`
	HeartbeatInterval Duration          `json:"heartbeat_interval"`
	Plugins           []PluginInstance  `json:"plugins,omitempty"`
}

// PluginInstance is one plugin instance on a host.
type PluginInstance struct {
	Plugin     string        `json:"plugin"`
	Instance   string        `json:"instance"`
	State      InstanceState `json:"state"`
	Binary     string        `json:"binary,omitempty"`
	Version    string        `json:"version,omitempty"`
	PID        int           `json:"pid,omitempty"`
	Restarts   int           `json:"restarts,omitempty"`
	StartedAt  *time.Time    `json:"started_at,omitempty"`
	LastExit   *InstanceExit `json:"last_exit,omitempty"`
	StderrTail []string      `json:"stderr_tail,omitempty"`
	Reason     string        `json:"reason,omitempty"`
}

// InstanceExit is how an instance's process ended.
type InstanceExit struct {
	// Cause is exited, start_error, not_ready or stopped.
	Cause  string    `json:"cause"`
	Code   *int      `json:"code,omitempty"`
	Signal string    `json:"signal,omitempty"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason,omitempty"`
}

// HostRef names one host.
type HostRef struct {
	Name string `json:"name"`
}

// HostListRequest asks for every host, or those in State.
type HostListRequest struct {
	State HostState `json:"state,omitempty"`
}

// HostListResponse answers HostListRequest.
type HostListResponse struct {
	Hosts []Host `json:"hosts"`
}

// HostControl is an operator's override for one plugin on one host
// (bucket BucketHostControl, key HostControlKey(host, plugin)).
type HostControl struct {
	Host   string `json:"host"`
	Plugin string `json:"plugin"`
	// Enabled, when set, overrides the config file's enabled.
	Enabled *bool `json:"enabled,omitempty"`
	// Restart changes at every restart request.
	Restart   string    `json:"restart,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// HostControlKey is the key of a host's override for a plugin.
func HostControlKey(host, plugin string) string { return host + "." + plugin }

// PluginHostRequest names a plugin on a host.
type PluginHostRequest struct {
	Name string `json:"name"`
	Host string `json:"host,omitempty"`
}

// PluginHostResponse lists the overrides written.
type PluginHostResponse struct {
	Controls []HostControl `json:"controls"`
}

// LogRecord is one line a plugin instance wrote, as hostd publishes it.
type LogRecord struct {
	Time      time.Time      `json:"time"`
	Level     string         `json:"level"`
	Message   string         `json:"message"`
	Fields    map[string]any `json:"fields,omitempty"`
	Stream    string         `json:"stream"`
	Host      string         `json:"host"`
	Plugin    string         `json:"plugin"`
	Instance  string         `json:"instance"`
	Truncated bool           `json:"truncated,omitempty"`
	// Dropped, on a line hostd writes itself, counts the lines the rate
	// limit dropped before it.
	Dropped int `json:"dropped,omitempty"`
}

// HostStateChangedData is the data of io.plugbus.host.v1.state_changed.
type HostStateChangedData struct {
	Name   string    `json:"name"`
	From   HostState `json:"from,omitempty"`
	To     HostState `json:"to"`
	Reason string    `json:"reason,omitempty"`
}

// IsScoped reports whether an endpoint takes its caller's name as one more
// subject token ("plugins.register.NAME"): the plugin's for registering
// and unregistering, the host's for hosts.plugin_creds. The server lets
// each identity publish its own only, so the broker knows who asks.
func IsScoped(endpoint string) bool {
	switch endpoint {
	case APIPluginsRegister, APIPluginsUnregister, APIHostsPluginCreds, APIActionsProgress, APIActionsComplete:
		return true
	}
	return false
}
