package broker

// The alert intake: POST /v1/alerts on the broker's HTTP listener takes
// Prometheus Alertmanager's webhook payload (version 4) or a plain JSON
// form and fires or resolves each alert through the broker's own API
// (alerts.fire, alerts.resolve, over NATS), so alert.pre_notify, the
// idempotency keys, the outbox and the metrics apply as they do to any
// other caller (docs/observability.md).
//
// Every alert of a payload is checked before any is applied: a bad payload
// changes nothing. The alerts are then applied in payload order, each
// under an idempotency key derived from its id, status and start time, so
// Alertmanager's repeats (it resends a group's firing alerts on every
// group_interval and repeat_interval) fire nothing again; if one fails the
// rest are skipped and the reply says which, and a repeat of the payload
// converges.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/common/model"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// IntakePath is where the broker's HTTP listener takes alerts.
const IntakePath = "/v1/alerts"

// Payload formats, the format label of plugbus_alert_intake_requests_total.
const (
	intakeAlertmanager = "alertmanager"
	intakePlain        = "plain"
	intakeUnknown      = "unknown"
)

var intakeFormats = []string{intakeAlertmanager, intakePlain, intakeUnknown}

// Label values of plugbus_alert_intake_alerts_total.
const (
	intakeFiring   = schemas.IntakeFiring
	intakeResolved = schemas.IntakeResolved
)

var intakeResults = schemas.IntakeResults

// alertmanagerIDPrefix starts the id of an alert taken from Alertmanager:
// "am-" and its fingerprint.
const alertmanagerIDPrefix = "am-"

// intake is the POST /v1/alerts handler's setup.
type intake struct {
	b *Broker
	// token is the bearer token callers must send ("" for none).
	token string
	// off, when set, is why the intake refuses every request: the HTTP
	// listener is not loopback and no token is set.
	off string
}

// newIntake reads the intake's token and decides, from the address the
// HTTP listener got, whether the intake may run without one.
func (b *Broker) newIntake(addr net.Addr) (*intake, error) {
	in := &intake{b: b, token: b.cfg.AlertsToken}
	if b.cfg.AlertsTokenFile != "" {
		raw, err := os.ReadFile(b.cfg.AlertsTokenFile)
		if err != nil {
			return nil, fmt.Errorf("%w: alerts-token-file: %v", ErrInvalidConfig, err)
		}
		in.token = strings.TrimSpace(string(raw))
		if in.token == "" {
			return nil, fmt.Errorf("%w: alerts-token-file: %s is empty: put the token in it", ErrInvalidConfig, b.cfg.AlertsTokenFile)
		}
	}
	if in.token == "" && !isLoopback(addr) {
		in.off = fmt.Sprintf("the alert intake is off: the HTTP listener %s is not loopback and no alerts token is set; "+
			"set the broker's alerts token and send it as Authorization: Bearer TOKEN", addr)
		b.log.Warn().Str(logging.FieldHTTPAddr, addr.String()).
			Msg("alert intake (POST " + IntakePath + ") is off: the HTTP listener is not loopback and no alerts token is set")
	}
	return in, nil
}

// isLoopback reports whether a listener address accepts loopback
// connections only.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// intakeAlert is one checked alert of a payload, ready to apply.
type intakeAlert struct {
	status string
	fire   schemas.AlertFireRequest
	// key is its idempotency key ("" for none).
	key string
}

// ServeHTTP answers POST /v1/alerts.
func (in *intake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := intakeUnknown
	resp, err := in.serve(w, r, &format)
	code := "ok"
	if err != nil {
		code = metricCode(schemas.AsError(err).Code)
	}
	in.b.metrics.intakeRequests.WithLabelValues(format, code).Inc()
	if isBadInput(code) {
		in.b.metrics.badInput.WithLabelValues(code).Inc()
	}
	if err != nil {
		status := schemas.HTTPStatus(schemas.AsError(err).Code)
		var ue unauthorized
		if errors.As(err, &ue) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="plugbus"`)
			status = http.StatusUnauthorized
		}
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// unauthorized marks a request without the right bearer token (HTTP 401).
type unauthorized struct{ err *schemas.Error }

func (u unauthorized) Error() string { return u.err.Error() }
func (u unauthorized) Unwrap() error { return u.err }

func (in *intake) serve(w http.ResponseWriter, r *http.Request, format *string) (*schemas.AlertIntakeResponse, error) {
	if in.off != "" {
		return nil, schemas.Errorf(schemas.CodeForbidden, "", "%s", in.off)
	}
	if in.token != "" && !validBearer(r.Header.Get("Authorization"), in.token) {
		return nil, unauthorized{err: &schemas.Error{Code: schemas.CodeForbidden, Field: "Authorization",
			Message: "the alert intake needs the alerts token: send it as Authorization: Bearer TOKEN"}}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(in.b.cfg.MaxRequestBytes)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, schemas.Errorf(schemas.CodeTooLarge, "", "the payload is above the limit of %d bytes: send fewer alerts per request (Alertmanager: max_alerts)", tooLarge.Limit)
		}
		return nil, schemas.Errorf(schemas.CodeBadRequest, "", "cannot read the body: %v", err)
	}
	key, err := idempotencyKey(nats.Header(r.Header))
	if err != nil {
		return nil, err
	}
	alerts, f, err := parseIntake(body, key)
	*format = f
	if err != nil {
		return nil, err
	}
	if n := truncated(body); n > 0 {
		in.b.log.Warn().Int("truncated_alerts", n).Msg("Alertmanager left alerts out of its payload (max_alerts): they are not taken in")
	}
	resp, err := in.apply(r.Context(), alerts)
	if err == nil && in.b.cfg.SelfCheck {
		if verr := schemas.ValidateValue(schemas.APIAlertIntakeResponse, resp); verr != nil {
			return nil, &schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("the intake's reply fails its schema: %v", verr)}
		}
	}
	return resp, err
}

// truncated returns an Alertmanager payload's truncatedAlerts.
func truncated(body []byte) int {
	var p struct {
		TruncatedAlerts int `json:"truncatedAlerts"`
	}
	_ = json.Unmarshal(body, &p)
	return p.TruncatedAlerts
}

// validBearer checks an Authorization header against the token in
// constant time.
func validBearer(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	a := sha256.Sum256([]byte(strings.TrimSpace(got)))
	b := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// parseIntake checks a payload against its schema (Alertmanager's when it
// has a version, the plain form's otherwise) and turns every alert into an
// intakeAlert. It applies nothing. key is the request's Idempotency-Key
// header ("" for none): it keys the plain alerts that have no starts_at.
func parseIntake(body []byte, key string) ([]intakeAlert, string, error) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil {
		// Not a JSON object: the schema check says so with its code.
		return nil, intakeUnknown, schemas.Validate(schemas.APIAlertIntakeRequest, body)
	}
	var out []intakeAlert
	ids := map[string]int{}
	add := func(i int, a intakeAlert) error {
		if j, dup := ids[a.fire.ID]; dup {
			return schemas.Errorf(schemas.CodeInvalidField, fmt.Sprintf("alerts[%d].id", i),
				"alert %q appears twice in the payload (alerts[%d] and alerts[%d]): send each alert once", a.fire.ID, j, i)
		}
		ids[a.fire.ID] = i
		out = append(out, a)
		return nil
	}
	if _, ok := probe["version"]; ok {
		var p schemas.AlertmanagerWebhook
		if err := schemas.Decode(schemas.APIAlertmanagerWebhook, body, &p); err != nil {
			return nil, intakeAlertmanager, err
		}
		for i, a := range p.Alerts {
			if err := add(i, fromAlertmanager(a)); err != nil {
				return nil, intakeAlertmanager, err
			}
		}
		return out, intakeAlertmanager, nil
	}
	var p schemas.AlertIntakeRequest
	if err := schemas.Decode(schemas.APIAlertIntakeRequest, body, &p); err != nil {
		return nil, intakePlain, err
	}
	for i, a := range p.Alerts {
		if err := add(i, fromPlain(a, key)); err != nil {
			return nil, intakePlain, err
		}
	}
	return out, intakePlain, nil
}

// fromAlertmanager maps an Alertmanager alert: its id is "am-" and its
// fingerprint; severity comes from the severity label, the summary from
// the summary (or description) annotation, else the alert's name.
func fromAlertmanager(a schemas.AlertmanagerAlert) intakeAlert {
	fp := a.Fingerprint
	if fp == "" {
		// Alertmanager's own fingerprint of the label set.
		fp = model.LabelSet(toLabelSet(a.Labels)).Fingerprint().String()
	}
	id := alertmanagerIDPrefix + fp
	summary := firstNonEmpty(a.Annotations["summary"], a.Annotations["description"], a.Labels["alertname"], "alert "+fp)
	return intakeAlert{
		status: a.Status,
		fire:   schemas.AlertFireRequest{ID: id, Severity: severityOf(a.Labels["severity"]), Summary: summary, Labels: a.Labels},
		key:    intakeKey("alertmanager", id, a.Status, a.StartsAt.UTC().Format(time.RFC3339Nano)),
	}
}

// fromPlain maps a plain alert. Its idempotency key comes from its
// starts_at, else from the request's Idempotency-Key header; with neither
// it has none, and a repeat fires it again.
func fromPlain(a schemas.AlertIntakeItem, requestKey string) intakeAlert {
	status := a.Status
	if status == "" {
		status = intakeFiring
	}
	out := intakeAlert{status: status, fire: schemas.AlertFireRequest{ID: a.ID, Severity: a.Severity, Summary: a.Summary, Labels: a.Labels}}
	switch {
	case a.StartsAt != nil:
		out.key = intakeKey("plain", a.ID, status, a.StartsAt.UTC().Format(time.RFC3339Nano))
	case requestKey != "":
		out.key = intakeKey("plain-request", a.ID, status, requestKey)
	}
	return out
}

func toLabelSet(m map[string]string) model.LabelSet {
	ls := make(model.LabelSet, len(m))
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// intakeKey is an alert's idempotency key: one per alert, status and
// firing period.
func intakeKey(form, id, status, startsAt string) string {
	h := sha256.Sum256([]byte(form + "\x00" + id + "\x00" + status + "\x00" + startsAt))
	return "alert-intake-" + hex.EncodeToString(h[:16])
}

// severityOf maps Alertmanager's conventional severity label onto a plugbus
// severity: critical, warning and info as they are (any case), error and
// page as critical, warn as warning; anything else (or none) is warning.
// The label itself stays among the alert's labels.
func severityOf(label string) string {
	switch strings.ToLower(label) {
	case "critical", "error", "page":
		return "critical"
	case "info":
		return "info"
	default:
		return "warning"
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

// apply fires or resolves each alert in order through the broker API,
// stopping at the first failure.
func (in *intake) apply(ctx context.Context, alerts []intakeAlert) (*schemas.AlertIntakeResponse, error) {
	resp := &schemas.AlertIntakeResponse{Alerts: make([]schemas.AlertIntakeResult, 0, len(alerts))}
	var failed *schemas.Error
	for _, a := range alerts {
		res := schemas.AlertIntakeResult{ID: a.fire.ID, Status: a.status}
		if failed != nil {
			res.Result = schemas.IntakeSkipped
		} else {
			res.Result, res.EventID, res.Error = in.applyOne(ctx, a)
			if res.Error != nil {
				failed = res.Error
			}
		}
		in.b.metrics.intakeAlerts.WithLabelValues(a.status, res.Result).Inc()
		resp.Alerts = append(resp.Alerts, res)
	}
	if failed == nil {
		return resp, nil
	}
	done := 0
	var first schemas.AlertIntakeResult
	for _, r := range resp.Alerts {
		switch r.Result {
		case schemas.IntakeFailed:
			first = r
		case schemas.IntakeSkipped:
		default:
			done++
		}
	}
	return nil, &schemas.Error{Code: failed.Code, Field: failed.Field, Plugin: failed.Plugin,
		Message: fmt.Sprintf("alert %s (%s) failed: %s; %d of %d alerts before it were applied and the %d after it skipped: send the payload again once the cause is fixed (what was applied is not applied twice)",
			first.ID, first.Status, failed.Message, done, len(alerts), len(alerts)-done-1),
		Details: map[string]any{schemas.DetailAlerts: resp.Alerts}}
}

// applyOne fires or resolves one alert and names the result.
func (in *intake) applyOne(ctx context.Context, a intakeAlert) (result, eventID string, _ *schemas.Error) {
	ctx, cancel := context.WithTimeout(ctx, in.b.cfg.RequestTimeout)
	defer cancel()
	var resp schemas.AlertResponse
	if a.status == intakeResolved {
		err := in.call(ctx, schemas.APIAlertsResolve, a.key, schemas.AlertRef{ID: a.fire.ID}, &resp)
		switch e := schemas.AsError(err); {
		case err == nil:
			return schemas.IntakeResolvedOK, resp.EventID, nil
		case e.Code == schemas.CodeNotFound:
			return schemas.IntakeNotFound, "", nil
		case e.Code == schemas.CodeConflict:
			return schemas.IntakeUnchanged, "", nil
		default:
			return schemas.IntakeFailed, "", e
		}
	}
	if err := in.call(ctx, schemas.APIAlertsFire, a.key, a.fire, &resp); err != nil {
		return schemas.IntakeFailed, "", schemas.AsError(err)
	}
	if resp.Alert.Status == schemas.AlertSuppressed {
		return schemas.IntakeSuppressed, "", nil
	}
	return schemas.IntakeFired, resp.EventID, nil
}

// call sends one request to the broker API under an idempotency key. A
// failed request's reply is not kept for the key, as the API keeps it for
// other callers: the intake's caller repeats a payload to get past a
// failure, and the repeat must try again. (The operation failed before its
// commit, so trying again under the same key applies it once.)
func (in *intake) call(ctx context.Context, endpoint, key string, req, resp any) error {
	subject := wire.APISubject(in.b.cfg.Prefix, endpoint)
	var hdr nats.Header
	if key != "" {
		hdr = nats.Header{wire.HeaderIdempotencyKey: {key}}
	}
	err := wire.CallHeader(ctx, in.b.nc, subject, hdr, req, resp)
	if err != nil && key != "" {
		switch schemas.AsError(err).Code {
		case schemas.CodeNotFound, schemas.CodeConflict:
			// Final answers (nothing to resolve, already resolved).
		default:
			if derr := in.b.st.requests.Delete(context.WithoutCancel(ctx), requestKey(endpoint, subject, key)); derr != nil && !isNotFound(derr) {
				in.b.log.Warn().Err(derr).Str(logging.FieldEndpoint, endpoint).Msg("cannot forget a failed alert intake reply: a repeat of the payload gets the failure again until the idempotency window ends")
			}
		}
	}
	return err
}

// writeError answers with err as a plugbus error envelope.
func writeError(w http.ResponseWriter, status int, err error) {
	e := schemas.AsError(err)
	w.Header().Set(schemas.HeaderErrorCode, e.Code)
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		fmt.Fprintf(&buf, `{"code":%q,"message":%q}`+"\n", schemas.CodeInternal, "cannot encode the reply: "+err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
