package schemas

import "time"

// Schemas of the broker's alert intake (POST /v1/alerts on its HTTP
// listener; docs/observability.md).
const (
	// APIAlertmanagerWebhook validates an [AlertmanagerWebhook].
	APIAlertmanagerWebhook = "api/v1/alertmanager_webhook.json"
	// APIAlertIntakeRequest validates an [AlertIntakeRequest].
	APIAlertIntakeRequest = "api/v1/alert_intake_request.json"
	// APIAlertIntakeResponse validates an [AlertIntakeResponse].
	APIAlertIntakeResponse = "api/v1/alert_intake_response.json"
)

// AlertmanagerVersion is the only Alertmanager webhook payload version the
// intake knows.
const AlertmanagerVersion = "4"

// AlertmanagerWebhook is the payload Prometheus Alertmanager's webhook
// receiver posts (version 4).
type AlertmanagerWebhook struct {
	Version           string              `json:"version"`
	GroupKey          string              `json:"groupKey,omitempty"`
	TruncatedAlerts   int                 `json:"truncatedAlerts,omitempty"`
	Status            string              `json:"status"`
	Receiver          string              `json:"receiver,omitempty"`
	GroupLabels       map[string]string   `json:"groupLabels,omitempty"`
	CommonLabels      map[string]string   `json:"commonLabels,omitempty"`
	CommonAnnotations map[string]string   `json:"commonAnnotations,omitempty"`
	ExternalURL       string              `json:"externalURL,omitempty"`
	Alerts            []AlertmanagerAlert `json:"alerts"`
}

// AlertmanagerAlert is one alert of an [AlertmanagerWebhook].
type AlertmanagerAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	Fingerprint  string            `json:"fingerprint,omitempty"`
}

// AlertIntakeRequest is the plain JSON form of POST /v1/alerts.
type AlertIntakeRequest struct {
	Alerts []AlertIntakeItem `json:"alerts"`
}

// AlertIntakeItem is one alert of an [AlertIntakeRequest]: firing (the
// default; Severity and Summary required) or resolved (ID alone).
type AlertIntakeItem struct {
	ID       string            `json:"id"`
	Status   string            `json:"status,omitempty"`
	Severity string            `json:"severity,omitempty"`
	Summary  string            `json:"summary,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// StartsAt, when set, makes a repeat of the alert (same ID, status
	// and StartsAt) recognisable: it does nothing again.
	StartsAt *time.Time `json:"starts_at,omitempty"`
}

// Alert statuses as the intake's payloads name them.
const (
	IntakeFiring   = "firing"
	IntakeResolved = "resolved"
)

// Results of one alert of an intake payload ([AlertIntakeResult].Result).
const (
	IntakeFired      = "fired"
	IntakeResolvedOK = "resolved"
	// IntakeSuppressed: alert.pre_notify rejected the alert; nothing fired.
	IntakeSuppressed = "suppressed"
	// IntakeUnchanged: a resolve of an alert that is already resolved, or
	// that alert.pre_notify suppressed.
	IntakeUnchanged = "unchanged"
	// IntakeNotFound: a resolve of an alert the broker does not have (it
	// never fired here, or left the alerts bucket after its retention).
	IntakeNotFound = "not_found"
	// IntakeFailed: the fire or resolve failed; Error says why.
	IntakeFailed = "failed"
	// IntakeSkipped: not tried, because an earlier alert of the payload
	// failed. A repeat of the payload applies it.
	IntakeSkipped = "skipped"
)

// IntakeResults lists every intake result, in a stable order.
var IntakeResults = []string{IntakeFired, IntakeResolvedOK, IntakeSuppressed, IntakeUnchanged, IntakeNotFound, IntakeFailed, IntakeSkipped}

// AlertIntakeResponse says what POST /v1/alerts did with each alert, in
// payload order. When an alert failed the reply is an [Error] instead,
// whose Details[DetailAlerts] holds these results.
type AlertIntakeResponse struct {
	Alerts []AlertIntakeResult `json:"alerts"`
}

// AlertIntakeResult is what happened to one alert of an intake payload.
type AlertIntakeResult struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Result  string `json:"result"`
	EventID string `json:"event_id,omitempty"`
	Error   *Error `json:"error,omitempty"`
}

// DetailAlerts carries the per-alert results ([AlertIntakeResult]) of a
// failed intake request.
const DetailAlerts = "alerts"
