package schemas

import "strings"

// JetStream streams and KV buckets of the bus. Their names are fixed so
// every tool (broker, SDK, busctl, dashboards) finds them without
// configuration; docs/protocol.md describes each.
const (
	// StreamEvents holds every event ("<prefix>.evt.>").
	StreamEvents = "PLUGBUS_EVENTS"
	// StreamDLQ holds dead letters ("<prefix>.dlq.<consumer>").
	StreamDLQ = "PLUGBUS_DLQ"
	// StreamAdvisories captures the event stream's max-deliveries and
	// terminated advisories for the broker's dead-letter path.
	StreamAdvisories = "PLUGBUS_ADVISORIES"

	BucketPlugins  = "plugbus_plugins"  // plugin name → PluginRecord
	BucketConfigs  = "plugbus_configs"  // plugin name → config object
	BucketMachines = "plugbus_machines" // machine name → Machine
	BucketJobs     = "plugbus_jobs"     // "<name>/<version>" → Job
	BucketAlerts   = "plugbus_alerts"   // alert id → Alert
	// BucketHosts holds what each hostd reports.
	BucketHosts = "plugbus_hosts" // host name → Host
	// BucketHostControl holds operators' overrides, which hostd follows.
	BucketHostControl = "plugbus_hostctl" // "<host>.<plugin>" → HostControl
	// StreamLogs holds the plugins' log lines hostd forwards
	// ("<prefix>.log.<host>.<plugin>.<instance>"), bounded by age and size.
	StreamLogs = "PLUGBUS_LOGS"
)

// Dead-letter headers set on every message in StreamDLQ, next to the
// original message's own headers (its ce- attributes).
const (
	HeaderDLQReason     = "plugbus-dlq-reason"
	HeaderDLQCause      = "plugbus-dlq-cause"
	HeaderDLQConsumer   = "plugbus-dlq-consumer"
	HeaderDLQStream     = "plugbus-dlq-stream"
	HeaderDLQStreamSeq  = "plugbus-dlq-stream-seq"
	HeaderDLQSubject    = "plugbus-dlq-subject"
	HeaderDLQDeliveries = "plugbus-dlq-deliveries"
	HeaderDLQTime       = "plugbus-dlq-time"
	// HeaderDLQCode carries the dead-letter reason code (Reason*), when
	// the consumer gave one.
	HeaderDLQCode = "plugbus-dlq-code"
)

// Dead-letter reason codes. A consumer that gives up on an event terminates
// it with a reason of the form "CODE: message" (see TerminationReason); the
// broker keeps the code in HeaderDLQCode, so tools branch on it rather than
// on the message.
const (
	// ReasonMalformed: the message is not a CloudEvent the consumer can
	// read (missing attributes, an unsupported spec version).
	ReasonMalformed = "malformed_event"
	// ReasonInvalidData: the event's data fails its type's schema.
	ReasonInvalidData = "invalid_data"
	// ReasonUnhandled: no handler matches the event's type.
	ReasonUnhandled = "unhandled_type"
	// ReasonPermanent: the handler said retrying cannot help.
	ReasonPermanent = "permanent_failure"
	// ReasonRetriesExhausted: the handler failed on the last delivery
	// allowed; the message is the handler's last error.
	ReasonRetriesExhausted = "retries_exhausted"
)

// ReasonCodes lists every dead-letter reason code.
var ReasonCodes = []string{ReasonMalformed, ReasonInvalidData, ReasonUnhandled, ReasonPermanent, ReasonRetriesExhausted}

// TerminationReason formats a termination reason: "CODE: message".
func TerminationReason(code, message string) string { return code + ": " + message }

// ParseTerminationReason splits a termination reason into its code and
// message; code is "" when the reason does not start with a known code.
func ParseTerminationReason(reason string) (code, message string) {
	for _, c := range ReasonCodes {
		if rest, ok := strings.CutPrefix(reason, c+": "); ok {
			return c, rest
		}
	}
	return "", reason
}

// Dead-letter causes (HeaderDLQCause).
const (
	CauseMaxDeliveries = "max_deliveries"
	CauseTerminated    = "terminated"
)
