package schemas

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"
)

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
	// BucketRequests keeps the replies to requests with an idempotency
	// key for the idempotency window (broker only).
	BucketRequests = "plugbus_requests" // request key → stored reply
	// BucketHosts holds what each hostd reports.
	BucketHosts = "plugbus_hosts" // host name → Host
	// BucketHostControl holds operators' overrides, which hostd follows.
	BucketHostControl = "plugbus_hostctl" // "<host>.<plugin>" → HostControl
	// BucketHandled remembers the events (and other keys) a plugin has
	// handled, for exactly-once side effects (sdk Plugin.Once): key
	// "<plugin>.<key>" (see HandledKey), kept as long as events are.
	BucketHandled = "plugbus_handled"
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
	// ReasonUntrusted: the event's type or source does not match the
	// subject it arrived on (a forged core event, another plugin's
	// source): see wire.CheckOrigin.
	ReasonUntrusted = "untrusted_event"
	// ReasonUnhandled: no handler matches the event's type.
	ReasonUnhandled = "unhandled_type"
	// ReasonPermanent: the handler said retrying cannot help.
	ReasonPermanent = "permanent_failure"
	// ReasonRetriesExhausted: the handler failed on the last delivery
	// allowed; the message is the handler's last error.
	ReasonRetriesExhausted = "retries_exhausted"
)

// ReasonCodes lists every dead-letter reason code.
var ReasonCodes = []string{ReasonMalformed, ReasonUntrusted, ReasonInvalidData, ReasonUnhandled, ReasonPermanent, ReasonRetriesExhausted}

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

// Reading the streams. Admins do not get JetStream consumer permissions on
// the event stream: a consumer subject cannot tell a reader's consumer from
// a plugin's durable one (no partial-token wildcards), so any such
// permission would let an admin read or delete a plugin's consumer. They
// ask the broker instead, which creates a short-lived push consumer that
// delivers to the admin's own inbox.
const (
	APIStreamsRead = "streams.read" // StreamReadRequest → StreamReadResponse (admin)
	APIStreamsStop = "streams.stop" // StreamStopRequest → StreamStopResponse (admin)

	APIStreamReadRequest  = "api/v1/stream_read_request.json"  // StreamReadRequest
	APIStreamReadResponse = "api/v1/stream_read_response.json" // StreamReadResponse
	APIStreamStopRequest  = "api/v1/stream_stop_request.json"  // StreamStopRequest
	APIStreamStopResponse = "api/v1/stream_stop_response.json" // StreamStopResponse

	// ReadConsumerPrefix starts the name of every consumer streams.read
	// creates; streams.stop deletes no other.
	ReadConsumerPrefix = "read_"
)

// ReadableStreams are the streams streams.read reads.
var ReadableStreams = []string{StreamEvents, StreamDLQ, StreamLogs}

// StreamReadRequest asks the broker to deliver the last Last messages of
// Stream that match Filters (every message when empty), only among those
// stored at or after Since when it is set, oldest first, to Deliver; with
// Follow, new ones keep coming until the reader stops (streams.stop) or
// goes away (its consumer is deleted about InactiveSeconds later).
type StreamReadRequest struct {
	Stream  string     `json:"stream"`
	Filters []string   `json:"filters,omitempty"`
	Last    uint64     `json:"last"`
	Since   *time.Time `json:"since,omitempty"`
	// FromSeq, when set (not with Since), starts the window at this
	// stream sequence: the reader gets the first Last matching messages
	// from there (every one with a huge Last).
	FromSeq uint64 `json:"from_seq,omitempty"`
	Follow  bool   `json:"follow,omitempty"`
	// Deliver is the reader's own inbox ("_INBOX.…"), subscribed before
	// the request: JetStream pushes the messages there, with flow control
	// requests the reader answers and idle heartbeats.
	Deliver string `json:"deliver"`
}

// StreamReadResponse says what the reader will get.
type StreamReadResponse struct {
	// Consumer is the push consumer delivering to Deliver; empty when there
	// is nothing to deliver (Want 0 without Follow).
	Consumer string `json:"consumer,omitempty"`
	// Want is how many messages of the window there are: the reader has
	// the last Last ones once it received that many (or one says no more
	// are pending).
	Want uint64 `json:"want"`
	// StartSeq is the first stream sequence of the window (0 when it
	// starts at Since).
	StartSeq uint64 `json:"start_seq,omitempty"`
	// InactiveSeconds is how long the consumer outlives its reader.
	InactiveSeconds int `json:"inactive_seconds,omitempty"`
}

// StreamStopRequest deletes a consumer streams.read created.
type StreamStopRequest struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
}

// StreamStopResponse answers StreamStopRequest.
type StreamStopResponse struct {
	Stopped bool `json:"stopped"`
}

// maxHandledToken bounds the key part of a BucketHandled key.
const maxHandledToken = 128

// HandledKey returns the key of BucketHandled under which plugin marks key
// as handled: "<plugin>.<token>". The token is key itself when key is 1 to
// 128 of A-Z, a-z, 0-9, "-" and "_" (event ids such as nuids and UUIDs);
// otherwise it is "=" and the unpadded base64url encoding of key when that
// fits in 128 characters, else "==" and the hex SHA-256 of key. KV keys
// allow few characters (no spaces, no ":" or "@", a "." splits tokens), and
// the encodings keep distinct keys apart: a raw token never holds "=", and
// base64url never starts with one.
func HandledKey(plugin, key string) string {
	return plugin + "." + handledToken(key)
}

func handledToken(key string) string {
	if len(key) > 0 && len(key) <= maxHandledToken && strings.IndexFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0 {
		return key
	}
	if enc := base64.RawURLEncoding.EncodeToString([]byte(key)); len(enc)+1 <= maxHandledToken {
		return "=" + enc
	}
	sum := sha256.Sum256([]byte(key))
	return "==" + hex.EncodeToString(sum[:])
}
