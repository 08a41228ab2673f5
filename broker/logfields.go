package broker

// Stable log field names used by the broker.
const (
	FieldComponent = "component"
	FieldPlugin    = "plugin"
	FieldVersion   = "version"
	FieldState     = "state"
	FieldEndpoint  = "endpoint"
	FieldCode      = "code"
	FieldEventID   = "event_id"
	FieldEventType = "event_type"
	FieldConsumer  = "consumer"
	FieldStreamSeq = "stream_seq"
	FieldActionID  = "action_id"
	FieldMachine   = "machine"
	FieldCommand   = "command"
	FieldJob       = "job"
	FieldAlert     = "alert"
	FieldReason    = "reason"
)
