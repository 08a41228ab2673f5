package schemas

import "time"

// Broker API endpoints for operators (busctl), besides those in api.go.
const (
	// APIPluginsVerify asks a plugin again whether it is ready (its
	// verify verb): an ACTIVE plugin that says no goes to ERROR; a plugin
	// in ERROR runs init → config → verify again and is ACTIVE when all
	// pass. PluginGetRequest → PluginRecord; a plugin that is not ready
	// fails with plugin_error (its record then holds the error).
	APIPluginsVerify = "plugins.verify"
	APIAlertsList    = "alerts.list" // AlertListRequest → AlertListResponse
	APIAlertsGet     = "alerts.get"  // AlertRef → Alert
	// APIEventsGet returns one message of the event stream, by stream
	// sequence or by CloudEvent id. EventGetRequest → StoredMessage.
	APIEventsGet = "events.get"

	APIAlertListRequest  = "api/v1/alert_list_request.json"  // AlertListRequest
	APIAlertListResponse = "api/v1/alert_list_response.json" // AlertListResponse
	APIEventGetRequest   = "api/v1/event_get_request.json"   // EventGetRequest
	APIStoredMessage     = "api/v1/stored_message.json"      // StoredMessage
)

// AlertListRequest asks for the alerts the broker keeps (firing ones, and
// resolved and suppressed ones for the alert retention).
type AlertListRequest struct {
	// Status, when set, keeps only alerts with that status (AlertFiring,
	// AlertResolved, AlertSuppressed).
	Status string `json:"status,omitempty"`
}

// AlertListResponse answers AlertListRequest, oldest fired first (then by
// id).
type AlertListResponse struct {
	Alerts []Alert `json:"alerts"`
}

// EventGetRequest names one message of the event stream: by its stream
// sequence, or by its CloudEvent id (the first message carrying that
// ce-id; a dead letter replayed carries its event's id too). Exactly one
// of the two.
type EventGetRequest struct {
	Seq uint64 `json:"seq,omitempty"`
	ID  string `json:"id,omitempty"`
}

// StoredMessage is one message of a stream as JetStream stores it.
type StoredMessage struct {
	Stream  string              `json:"stream"`
	Seq     uint64              `json:"seq"`
	Subject string              `json:"subject"`
	Time    time.Time           `json:"time"`
	Header  map[string][]string `json:"header,omitempty"`
	// Data is the message body (base64 in JSON).
	Data []byte `json:"data,omitempty"`
}
