package wire

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/plugbus/plugbus/schemas"
)

// DefaultPrefix is the subject prefix of a bus when none is configured.
const DefaultPrefix = "plugbus"

// ErrInvalidPrefix is wrapped by ValidatePrefix's errors.
var ErrInvalidPrefix = errors.New("invalid subject prefix")

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidatePrefix checks the subject prefix rule: one subject token of
// letters, digits, '-' or '_' (at most 64). One token keeps every plugbus
// subject's shape fixed, which the server-side permissions of each identity
// rely on.
func ValidatePrefix(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("%w %q: it must be one subject token of letters, digits, '-' or '_', such as %s",
			ErrInvalidPrefix, prefix, DefaultPrefix)
	}
	return nil
}

// Micro service names. Plugin instances live in their own namespace
// ("plugbus-plugin-NAME"), so no plugin name can take a name the core uses.
const (
	// BrokerService is the service name of the broker API.
	BrokerService = "plugbus-broker"
	// HostService is the service name of every hostd.
	HostService = "plugbus-hostd"
	// pluginServicePrefix starts every plugin's service name.
	pluginServicePrefix = "plugbus-plugin-"
)

// Service metadata keys.
const (
	// MetadataPlugin carries the plugin name on a plugin's service.
	MetadataPlugin = "plugbus.plugin"
	// MetadataPrefix carries the bus's subject prefix.
	MetadataPrefix = "plugbus.prefix"
	// MetadataHost carries the host a plugin instance or hostd runs on.
	MetadataHost = "plugbus.host"
	// MetadataInstance carries a plugin instance's id on its host, as
	// hostd numbers them.
	MetadataInstance = "plugbus.instance"
	// MetadataState carries the plugin's state as the instance last heard
	// it from the broker (ACTIVE once registered and verified).
	MetadataState = "plugbus.state"
	// MetadataReady is "true" once the instance is ready: registered, its
	// config in sync and, when ACTIVE and consuming, its consumer running.
	MetadataReady = "plugbus.ready"
)

// Environment variables hostd sets for the plugin processes it starts
// (the SDK's listen reads them), so a plugin needs no flags under hostd.
const (
	// EnvNATSURL is the bus's NATS URL (the nats CLI's variable).
	EnvNATSURL = "NATS_URL"
	// EnvNATSCreds is the plugin's own credentials file.
	EnvNATSCreds = "NATS_CREDS"
	// EnvNATSCert, EnvNATSKey and EnvNATSCA are the client TLS
	// certificate, key and CA files (the nats CLI's variables).
	EnvNATSCert = "NATS_CERT"
	EnvNATSKey  = "NATS_KEY"
	EnvNATSCA   = "NATS_CA"
	// EnvConfig is a plugin's initial config as a JSON object (hostd
	// passes it so, not on the command line, where every user of the
	// host could read secrets with ps). --config flags win over it.
	EnvConfig = "PLUGBUS_CONFIG"
	// EnvPrefix is the bus's subject prefix.
	EnvPrefix = "PLUGBUS_PREFIX"
	// EnvHost is the host's name.
	EnvHost = "PLUGBUS_HOST"
	// EnvInstance is the instance's id on the host.
	EnvInstance = "PLUGBUS_INSTANCE"
)

// PluginService returns the service name of a plugin's instances:
// "plugbus-plugin-" + name.
func PluginService(plugin string) string { return pluginServicePrefix + plugin }

// PluginFromService returns the plugin a service name belongs to, and
// whether it is a plugin's service at all.
func PluginFromService(service string) (string, bool) {
	name, ok := strings.CutPrefix(service, pluginServicePrefix)
	return name, ok && name != ""
}

// PingSubject returns the subject that pings every instance of a service.
func PingSubject(service string) string { return "$SRV.PING." + service }

// PingInstanceSubject returns the subject that pings one instance of a
// service by its id: with no such instance running, a request on it finds
// no responders.
func PingInstanceSubject(service, id string) string { return "$SRV.PING." + service + "." + id }

// APISubject returns the subject of a broker API endpoint:
// ("plugbus", "jobs.deploy") -> "plugbus.api.jobs.deploy".
func APISubject(prefix, endpoint string) string { return prefix + ".api." + endpoint }

// PluginSubject returns a plugin control subject: ("plugbus",
// "incrementer", "action") -> "plugbus.plugin.incrementer.action".
func PluginSubject(prefix, plugin, verb string) string {
	return prefix + ".plugin." + plugin + "." + verb
}

// HookSubject returns the subject a plugin answers a hook point on:
// ("plugbus", "job.pre_deploy", "job-policy") -> "plugbus.hook.job.pre_deploy.job-policy".
func HookSubject(prefix, hook, plugin string) string {
	return prefix + ".hook." + hook + "." + plugin
}

// EventSubject returns the subject an event type is published on:
// ("plugbus", "io.plugbus.job.v1.deployed") -> "plugbus.evt.job.v1.deployed".
// A trailing ".*" in the type stays a NATS wildcard.
func EventSubject(prefix, eventType string) string {
	return prefix + ".evt." + strings.TrimPrefix(eventType, schemas.TypePrefix)
}

// EventsSubject is the subject filter of every event on the bus.
func EventsSubject(prefix string) string { return prefix + ".evt.>" }

// PluginEventSubject returns the subject root of a plugin's own events:
// "plugbus.evt.plugin.NAME". A plugin publishes only below it.
func PluginEventSubject(prefix, plugin string) string { return prefix + ".evt.plugin." + plugin }

// DLQSubject returns the subject dead letters of a consumer are stored on.
func DLQSubject(prefix, consumer string) string { return prefix + ".dlq." + consumer }

// DLQSubjects is the subject filter of the dead-letter stream.
func DLQSubjects(prefix string) string { return prefix + ".dlq.>" }

// ChainsSubject returns a subject of the chain journal (stream
// PLUGBUS_CHAINS, written by brokers only): "plugbus.chains." and the
// tokens, one for the operation, then the chain's and the step's (see
// docs/protocol.md, "The chain journal").
func ChainsSubject(prefix string, tokens ...string) string {
	return prefix + ".chains." + strings.Join(tokens, ".")
}

// ChainsSubjects is the subject filter of the chain journal.
func ChainsSubjects(prefix string) string { return prefix + ".chains.>" }

// LogSubject returns the subject a plugin instance's log lines are
// published on by its hostd: "plugbus.log.HOST.PLUGIN.INSTANCE".
func LogSubject(prefix, host, plugin, instance string) string {
	return prefix + ".log." + host + "." + plugin + "." + instance
}

// LogsSubject is the subject filter of the log stream; host and plugin
// narrow it ("" or "*" for any).
func LogsSubject(prefix, host, plugin string) string {
	if host == "" {
		host = "*"
	}
	if plugin == "" {
		plugin = "*"
	}
	return prefix + ".log." + host + "." + plugin + ".*"
}

// PluginAPISubject returns the subject of an API endpoint a plugin calls
// for itself, with its name in the subject so the server can tell plugins
// apart: ("plugbus", "plugins.register", "incrementer") ->
// "plugbus.api.plugins.register.incrementer".
func PluginAPISubject(prefix, endpoint, plugin string) string {
	return APISubject(prefix, endpoint+"."+plugin)
}

// HostAPISubject returns the subject of an API endpoint a host calls for
// itself, with its name in the subject.
func HostAPISubject(prefix, endpoint, host string) string {
	return APISubject(prefix, endpoint+"."+host)
}

// InboxPrefix returns the reply inbox prefix of an identity: "host" or
// "plugin" with a name, or "broker". Those identities may subscribe to
// their own inboxes only, so none can read another's replies; they
// connect with nats.CustomInboxPrefix(InboxPrefix(...)). The admin keeps
// nats.go's default, "_INBOX", so the nats CLI works with admin
// credentials as it is; the broker has its own, so admins do not read the
// replies plugins send it.
func InboxPrefix(role, name string) string {
	switch role {
	case "host", "plugin":
		return "_INBOX_" + role + "_" + name
	case "broker":
		return "_INBOX_broker"
	}
	return "_INBOX"
}
