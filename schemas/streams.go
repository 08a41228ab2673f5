package schemas

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
)

// Dead-letter causes (HeaderDLQCause).
const (
	CauseMaxDeliveries = "max_deliveries"
	CauseTerminated    = "terminated"
)

// DLQSubject returns the subject dead letters of a consumer are stored on.
func DLQSubject(prefix, consumer string) string { return prefix + ".dlq." + consumer }
