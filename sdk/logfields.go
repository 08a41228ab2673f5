package sdk

import "github.com/plugbus/plugbus/internal/logging"

// Log field names the SDK uses: the same as the broker's and hostd's.
// Plugin code that logs through [Plugin.Logger] should use them too, so
// logs from every plugin can be searched the same way. An error is logged
// with zerolog's Err (field "error").
const (
	FieldPlugin    = logging.FieldPlugin
	FieldVersion   = logging.FieldVersion
	FieldInstance  = logging.FieldInstance
	FieldHost      = logging.FieldHost
	FieldState     = logging.FieldState
	FieldVerb      = logging.FieldVerb
	FieldCommand   = logging.FieldCommand
	FieldActionID  = logging.FieldActionID
	FieldObject    = logging.FieldObject
	FieldEventID   = logging.FieldEventID
	FieldEventType = logging.FieldEventType
	FieldConsumer  = logging.FieldConsumer
	FieldStreamSeq = logging.FieldStreamSeq
	FieldDelivered = logging.FieldDelivered
	FieldDelay     = logging.FieldDelay
	FieldReason    = logging.FieldReason
	FieldCode      = logging.FieldCode
	FieldHook      = logging.FieldHook
	FieldChainID   = logging.FieldChainID
	FieldNATSURL   = logging.FieldNATSURL
)
