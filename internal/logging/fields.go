package logging

import (
	"net/url"
	"strings"
)

// Log field names shared by every plugbus component. The SDK re-exports
// them for plugin code, so logs from the broker, hostd and every plugin can
// be searched the same way. The error of a failure (a plugin's last error
// too) is zerolog's "error" field (Err).
const (
	FieldComponent = "component" // broker, hostd, nats-server
	FieldPlugin    = "plugin"
	FieldVersion   = "version"
	FieldInstance  = "instance" // a plugin instance's service id
	FieldHost      = "host"
	FieldState     = "state"
	FieldFrom      = "from" // the previous state of a transition
	FieldEndpoint  = "endpoint"
	FieldVerb      = "verb"
	FieldCode      = "code"
	FieldEventID   = "event_id"
	FieldEventType = "event_type"
	FieldConsumer  = "consumer"
	FieldStreamSeq = "stream_seq"
	FieldDelivered = "delivered"
	FieldDelay     = "delay"
	FieldActionID  = "action_id"
	FieldMachine   = "machine"
	FieldCommand   = "command"
	FieldObject    = "object"
	FieldJob       = "job"
	FieldAlert     = "alert"
	FieldHook      = "hook"
	FieldChainID   = "chain_id"
	FieldOutcome   = "outcome"
	FieldDuration  = "duration_ms"
	FieldReason    = "reason" // why something was refused, rejected or dead-lettered
	FieldNATSURL   = "nats_url"
	FieldHTTPAddr  = "http"
	FieldPID       = "pid"
	FieldStream    = "stream" // stdout or stderr of a plugin process
)

// RedactURL hides the secrets of a NATS URL (or a comma-separated list):
// passwords and tokens in the user info become "xxxxx". Log URLs only
// through it.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, hasPassword := u.User.Password(); hasPassword {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
