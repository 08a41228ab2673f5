package sdk

// Stable log field names used by the SDK. Plugin code that logs through
// [Plugin.Logger] should use them too, so logs from every plugin can be
// searched the same way.
const (
	FieldPlugin    = "plugin"
	FieldVersion   = "version"
	FieldInstance  = "instance"
	FieldState     = "state"
	FieldVerb      = "verb"
	FieldCommand   = "command"
	FieldActionID  = "action_id"
	FieldObject    = "object"
	FieldEventID   = "event_id"
	FieldEventType = "event_type"
	FieldConsumer  = "consumer"
	FieldStreamSeq = "stream_seq"
	FieldDelivered = "delivered"
	FieldDelay     = "delay"
	FieldReason    = "reason"
	FieldCode      = "code"
	FieldHook      = "hook"
	FieldChainID   = "chain_id"
)
