package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/plugbus/plugbus/schemas"
)

// postAlerts POSTs a payload to /v1/alerts and decodes the reply: an
// AlertIntakeResponse on 200, a schemas.Error otherwise.
func postAlerts(t *testing.T, addr, token string, payload any) (int, *schemas.AlertIntakeResponse, *schemas.Error) {
	t.Helper()
	var body []byte
	switch p := payload.(type) {
	case []byte:
		body = p
	case string:
		body = []byte(p)
	default:
		var err error
		if body, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+IntakePath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("reply Content-Type %q: %s", ct, raw)
	}
	if resp.StatusCode == http.StatusOK {
		var out schemas.AlertIntakeResponse
		if err := schemas.Decode(schemas.APIAlertIntakeResponse, raw, &out); err != nil {
			t.Fatalf("reply fails its schema: %v\n%s", err, raw)
		}
		return resp.StatusCode, &out, nil
	}
	var e schemas.Error
	if err := schemas.Decode(schemas.APIError, raw, &e); err != nil {
		t.Fatalf("error reply fails its schema: %v\n%s", err, raw)
	}
	if e.Message == "" || resp.Header.Get(schemas.HeaderErrorCode) != e.Code {
		t.Fatalf("error reply without message or code header: %s", raw)
	}
	return resp.StatusCode, nil, &e
}

// amAlert is an Alertmanager alert as its webhook sends it.
func amAlert(status, name, instance string, startsAt time.Time, fingerprint bool) schemas.AlertmanagerAlert {
	a := schemas.AlertmanagerAlert{
		Status:       status,
		Labels:       map[string]string{"alertname": name, "instance": instance, "severity": "critical"},
		Annotations:  map[string]string{"summary": name + " on " + instance},
		StartsAt:     startsAt,
		GeneratorURL: "http://prometheus:9090/graph?g0.expr=up",
	}
	if status == "resolved" {
		a.EndsAt = startsAt.Add(time.Minute)
	}
	if fingerprint {
		a.Fingerprint = model.LabelSet(toLabelSet(a.Labels)).Fingerprint().String()
	}
	return a
}

func amPayload(status string, alerts ...schemas.AlertmanagerAlert) schemas.AlertmanagerWebhook {
	return schemas.AlertmanagerWebhook{Version: "4", GroupKey: `{}:{alertname="DiskFull"}`, Status: status, Receiver: "plugbus",
		GroupLabels: map[string]string{"alertname": "DiskFull"}, ExternalURL: "http://alertmanager:9093", Alerts: alerts}
}

func amID(a schemas.AlertmanagerAlert) string {
	return alertmanagerIDPrefix + model.LabelSet(toLabelSet(a.Labels)).Fingerprint().String()
}

func results(r *schemas.AlertIntakeResponse) string {
	var parts []string
	for _, a := range r.Alerts {
		parts = append(parts, a.Result)
	}
	return strings.Join(parts, ",")
}

// TestIntakeAlertmanagerPayloads posts Alertmanager-shaped payloads as its
// webhook sends them — grouped, repeated, partly resolved, a new firing
// period — and finds one fired or resolved event per change and none per
// repeat.
func TestIntakeAlertmanagerPayloads(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	addr := tb.b.HTTPAddr()
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	m1 := amAlert("firing", "DiskFull", "m1", t0, true)
	m2 := amAlert("firing", "DiskFull", "m2", t0.Add(time.Second), false) // no fingerprint: computed alike
	count := func(eventType string, a schemas.AlertmanagerAlert) int {
		return len(eventsOf(t, tb, eventType, "alert/"+amID(a)))
	}

	status, first, _ := postAlerts(t, addr, "", amPayload("firing", m1, m2))
	if status != http.StatusOK || results(first) != "fired,fired" {
		t.Fatalf("grouped firing: %d %+v", status, first)
	}
	if first.Alerts[0].ID != amID(m1) || first.Alerts[1].ID != amID(m2) || first.Alerts[0].EventID == "" {
		t.Fatalf("ids: %+v", first.Alerts)
	}
	var fired []byte
	if msgs := eventsOf(t, tb, schemas.TypeAlertFired, "alert/"+amID(m1)); len(msgs) != 1 {
		t.Fatalf("%d fired events for m1", len(msgs))
	} else {
		fired = msgs[0].Data
	}
	var alert schemas.Alert
	if err := json.Unmarshal(fired, &alert); err != nil {
		t.Fatal(err)
	}
	if alert.Severity != "critical" || alert.Summary != "DiskFull on m1" || alert.Labels["instance"] != "m1" || alert.Status != schemas.AlertFiring {
		t.Fatalf("fired alert: %+v", alert)
	}

	// Alertmanager repeats the group (group_interval, repeat_interval):
	// the same replies, nothing new in the stream.
	_, again, _ := postAlerts(t, addr, "", amPayload("firing", m1, m2))
	if results(again) != "fired,fired" || again.Alerts[0].EventID != first.Alerts[0].EventID {
		t.Fatalf("repeat: %+v, first %+v", again, first)
	}
	// m1 resolves; m2, still firing, comes along as Alertmanager sends it.
	r1 := amAlert("resolved", "DiskFull", "m1", t0, true)
	_, res, _ := postAlerts(t, addr, "", amPayload("firing", r1, m2))
	if results(res) != "resolved,fired" || res.Alerts[0].EventID == "" {
		t.Fatalf("resolve: %+v", res)
	}
	resolvedID := res.Alerts[0].EventID
	_, res, _ = postAlerts(t, addr, "", amPayload("resolved", r1))
	if results(res) != "resolved" || res.Alerts[0].EventID != resolvedID {
		t.Fatalf("resolved again: %+v", res)
	}
	// A resolve of that alert not recognised as a repeat (another
	// payload form, no key): it is already resolved.
	if _, res, _ = postAlerts(t, addr, "", `{"alerts":[{"id":"`+amID(m1)+`","status":"resolved"}]}`); results(res) != "unchanged" {
		t.Fatalf("resolve of a resolved alert: %+v", res)
	}
	for _, c := range []struct {
		typ  string
		a    schemas.AlertmanagerAlert
		want int
	}{{schemas.TypeAlertFired, m1, 1}, {schemas.TypeAlertFired, m2, 1}, {schemas.TypeAlertResolved, m1, 1}, {schemas.TypeAlertResolved, m2, 0}} {
		if got := count(c.typ, c.a); got != c.want {
			t.Errorf("%s events of %s: %d, want %d", c.typ, c.a.Labels["instance"], got, c.want)
		}
	}
	// It fires again later: a new firing period, a new event.
	m1b := amAlert("firing", "DiskFull", "m1", t0.Add(time.Hour), true)
	if _, res, _ = postAlerts(t, addr, "", amPayload("firing", m1b)); results(res) != "fired" || res.Alerts[0].EventID == first.Alerts[0].EventID {
		t.Fatalf("fired again: %+v", res)
	}
	if got := count(schemas.TypeAlertFired, m1); got != 2 {
		t.Errorf("m1 fired %d times after a new firing period, want 2", got)
	}
	// A resolve for an alert the broker never saw fire.
	ghost := amAlert("resolved", "Ghost", "m9", t0, true)
	if _, res, _ = postAlerts(t, addr, "", amPayload("resolved", ghost)); results(res) != "not_found" {
		t.Fatalf("unknown resolve: %+v", res)
	}

	mfs := scrape(t, addr)
	if got := mustSample(t, mfs, "plugbus_alert_intake_requests_total", map[string]string{"format": "alertmanager", "code": "ok"}); got != 6 {
		t.Errorf("intake requests ok = %v, want 6", got)
	}
	if got := mustSample(t, mfs, "plugbus_alert_intake_alerts_total", map[string]string{"status": "firing", "result": "fired"}); got != 6 {
		t.Errorf("intake firing alerts fired = %v, want 6", got)
	}
}

// TestIntakeBadPayloads: each bad payload gets 400 (or 413) naming the
// field, and nothing of it is applied, even its valid alerts.
func TestIntakeBadPayloads(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", MaxRequestBytes: 4096})
	addr := tb.b.HTTPAddr()
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	good := amAlert("firing", "DiskFull", "m1", t0, true)
	goodJSON, _ := json.Marshal(good)
	withAlert := func(alert string) string {
		return `{"version":"4","status":"firing","receiver":"plugbus","alerts":[` + string(goodJSON) + `,` + alert + `]}`
	}
	cases := []struct {
		name, payload string
		status        int
		code, field   string
	}{
		{"not json", `{"version":`, 400, schemas.CodeBadRequest, ""},
		{"array", `[{"labels":{}}]`, 400, schemas.CodeBadRequest, "(root)"},
		{"unknown version", `{"version":"3","status":"firing","alerts":[` + string(goodJSON) + `]}`, 400, schemas.CodeInvalidField, "version"},
		{"no alerts", `{"version":"4","status":"firing"}`, 400, schemas.CodeInvalidField, "alerts"},
		{"empty alerts", `{"version":"4","status":"firing","alerts":[]}`, 400, schemas.CodeInvalidField, "alerts"},
		{"bad status", `{"version":"4","status":"burning","alerts":[` + string(goodJSON) + `]}`, 400, schemas.CodeInvalidField, "status"},
		{"second alert without labels", withAlert(`{"status":"firing","startsAt":"2025-03-14T09:00:00Z"}`), 400, schemas.CodeInvalidField, "alerts[1].labels"},
		{"second alert bad time", withAlert(`{"status":"firing","labels":{"alertname":"X"},"startsAt":"yesterday"}`), 400, schemas.CodeInvalidField, "alerts[1].startsAt"},
		{"second alert bad fingerprint", withAlert(`{"status":"firing","labels":{"alertname":"X"},"startsAt":"2025-03-14T09:00:00Z","fingerprint":"XYZ"}`), 400, schemas.CodeInvalidField, "alerts[1].fingerprint"},
		{"same alert twice", withAlert(string(goodJSON)), 400, schemas.CodeInvalidField, "alerts[1].id"},
		{"plain: firing without severity", `{"alerts":[{"id":"a1","summary":"x"}]}`, 400, schemas.CodeInvalidField, "alerts[0].severity"},
		{"plain: bad id", `{"alerts":[{"id":"a b","severity":"info","summary":"x"}]}`, 400, schemas.CodeInvalidField, "alerts[0].id"},
		{"plain: unknown field", `{"alerts":[{"id":"a1","severity":"info","summary":"x","sevrity":"info"}]}`, 400, schemas.CodeInvalidField, "alerts[0].sevrity"},
		{"plain: bad severity", `{"alerts":[{"id":"a1","severity":"urgent","summary":"x"}]}`, 400, schemas.CodeInvalidField, "alerts[0].severity"},
		{"too large", `{"alerts":[{"id":"a1","severity":"info","summary":"` + strings.Repeat("x", 5000) + `"}]}`, 413, schemas.CodeTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, e := postAlerts(t, addr, "", c.payload)
			if status != c.status || e == nil || e.Code != c.code || e.Field != c.field {
				t.Fatalf("got %d %+v, want %d %s field %q", status, e, c.status, c.code, c.field)
			}
		})
	}
	if got := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/"+amID(good))); got != 0 {
		t.Fatalf("a rejected payload fired its valid alert (%d events)", got)
	}
	mfs := scrape(t, addr)
	if got := mustSample(t, mfs, "plugbus_alert_intake_requests_total", map[string]string{"format": "alertmanager", "code": schemas.CodeInvalidField}); got != 8 {
		t.Errorf("alertmanager invalid_field requests = %v, want 8", got)
	}
	if got := mustSample(t, mfs, "plugbus_bad_input_total", map[string]string{"kind": schemas.CodeInvalidField}); got < 11 {
		t.Errorf("bad input invalid_field = %v, want at least 11", got)
	}
}

// TestIntakePlainForm: the plain JSON form fires and resolves; starts_at
// (or the request's Idempotency-Key) makes a repeat do nothing again.
func TestIntakePlainForm(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	addr := tb.b.HTTPAddr()
	payload := `{"alerts":[{"id":"disk-full.m1","severity":"critical","summary":"disk full on m1","labels":{"machine":"m1"},"starts_at":"2025-03-14T09:00:00Z"}]}`
	for range 2 {
		if status, res, e := postAlerts(t, addr, "", payload); status != 200 || results(res) != "fired" {
			t.Fatalf("plain fire: %d %+v %v", status, res, e)
		}
	}
	if got := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/disk-full.m1")); got != 1 {
		t.Fatalf("fired events: %d, want 1 (the repeat has the same starts_at)", got)
	}
	if _, res, _ := postAlerts(t, addr, "", `{"alerts":[{"id":"disk-full.m1","status":"resolved"}]}`); results(res) != "resolved" {
		t.Fatalf("plain resolve: %+v", res)
	}
	if got := len(eventsOf(t, tb, schemas.TypeAlertResolved, "alert/disk-full.m1")); got != 1 {
		t.Fatalf("resolved events: %d", got)
	}
}

// TestIntakePartialFailureConverges: when alert.pre_notify fails on one
// alert of a payload, the alerts before it are applied, the rest skipped,
// the reply (a 5xx, so Alertmanager retries) says which; the same payload
// sent again once the hook recovers applies the rest and nothing twice.
func TestIntakePartialFailureConverges(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	addr := tb.b.HTTPAddr()
	var broken atomic.Bool
	broken.Store(true)
	m := manifest("pager", "1.0.0")
	m.Hooks = []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify}}
	gate := newFakePlugin(t, tb.b.NATSURL(), m, tb.opts...)
	gate.onHook(schemas.HookAlertPreNotify, func(r schemas.HookRequest) (schemas.HookResponse, error) {
		var a schemas.AlertFireRequest
		_ = json.Unmarshal(r.Payload, &a)
		if a.Labels["instance"] == "m2" && broken.Load() {
			return schemas.HookResponse{}, &schemas.Error{Code: schemas.CodePluginError, Message: "pager service down"}
		}
		return schemas.HookResponse{Outcome: schemas.HookContinue}, nil
	})
	gate.start("plugbus")
	gate.register(t, tb, nil)

	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	alerts := []schemas.AlertmanagerAlert{amAlert("firing", "Hot", "m1", t0, true), amAlert("firing", "Hot", "m2", t0, true), amAlert("firing", "Hot", "m3", t0, true)}
	payload := amPayload("firing", alerts...)
	status, _, e := postAlerts(t, addr, "", payload)
	if status != http.StatusBadGateway || e.Code != schemas.CodePluginError || !strings.Contains(e.Message, amID(alerts[1])) {
		t.Fatalf("partial failure: %d %+v", status, e)
	}
	raw, _ := json.Marshal(e.Details[schemas.DetailAlerts])
	var per []schemas.AlertIntakeResult
	if err := json.Unmarshal(raw, &per); err != nil || len(per) != 3 {
		t.Fatalf("details.alerts: %s", raw)
	}
	if per[0].Result != "fired" || per[1].Result != "failed" || per[1].Error == nil || per[2].Result != "skipped" {
		t.Fatalf("per-alert results: %+v", per)
	}
	for i, want := range []int{1, 0, 0} {
		if got := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/"+amID(alerts[i]))); got != want {
			t.Errorf("after the failure, %s fired %d times, want %d", alerts[i].Labels["instance"], got, want)
		}
	}

	broken.Store(false)
	status, res, e := postAlerts(t, addr, "", payload)
	if status != 200 || results(res) != "fired,fired,fired" || res.Alerts[0].EventID != per[0].EventID {
		t.Fatalf("repeat after recovery: %d %+v %v", status, res, e)
	}
	for i := range alerts {
		if got := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/"+amID(alerts[i]))); got != 1 {
			t.Errorf("after the repeat, %s fired %d times, want 1", alerts[i].Labels["instance"], got)
		}
	}
}

// TestIntakeToken: with a token the intake wants it as a bearer token; on
// a listener that is not loopback and without a token it takes nothing.
func TestIntakeToken(t *testing.T) {
	payload := `{"alerts":[{"id":"a1","severity":"info","summary":"x"}]}`
	t.Run("token", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "token")
		if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tb := startBroker(t, Config{DataDir: dir, Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AlertsTokenFile: file})
		for _, tok := range []string{"", "wrong"} {
			status, _, e := postAlerts(t, tb.b.HTTPAddr(), tok, payload)
			if status != http.StatusUnauthorized || e.Code != schemas.CodeForbidden || e.Field != "Authorization" {
				t.Fatalf("token %q: %d %+v", tok, status, e)
			}
		}
		if status, res, e := postAlerts(t, tb.b.HTTPAddr(), "s3cret", payload); status != 200 || results(res) != "fired" {
			t.Fatalf("right token: %d %+v %v", status, res, e)
		}
	})
	t.Run("not loopback without a token", func(t *testing.T) {
		tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "0.0.0.0:0"})
		port := tb.b.HTTPAddr()[strings.LastIndexByte(tb.b.HTTPAddr(), ':'):]
		status, _, e := postAlerts(t, "127.0.0.1"+port, "", payload)
		if status != http.StatusForbidden || e.Code != schemas.CodeForbidden || !strings.Contains(e.Message, "not loopback") {
			t.Fatalf("intake on a public listener without a token: %d %+v", status, e)
		}
		scrape(t, "127.0.0.1"+port) // /metrics still served
	})
	t.Run("not loopback with a token", func(t *testing.T) {
		tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "0.0.0.0:0", AlertsToken: "s3cret"})
		port := tb.b.HTTPAddr()[strings.LastIndexByte(tb.b.HTTPAddr(), ':'):]
		if status, _, e := postAlerts(t, "127.0.0.1"+port, "s3cret", payload); status != 200 {
			t.Fatalf("%d %v", status, e)
		}
	})
	t.Run("config", func(t *testing.T) {
		if err := (Config{AlertsToken: "a", AlertsTokenFile: "f"}).Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "alerts-token") {
			t.Fatalf("token and file: %v", err)
		}
		dir := t.TempDir()
		empty := filepath.Join(dir, "empty")
		_ = os.WriteFile(empty, nil, 0o600)
		b, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AlertsTokenFile: empty})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Run(t.Context()); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("empty token file: %v", err)
		}
	})
}
