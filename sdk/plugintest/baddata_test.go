package plugintest_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

// publishRaw stores a binary-mode event with the given attributes and data
// as it is, bypassing the broker (which only publishes valid data).
func publishRaw(t *testing.T, bus *plugintest.Bus, subject string, attrs map[string]string, data []byte) {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: data}
	for k, v := range attrs {
		msg.Header[k] = []string{v}
	}
	if _, err := bus.JetStream().PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

func coreAttrs(id, typ string) map[string]string {
	return map[string]string{
		"ce-specversion": "1.0", "ce-id": id, "ce-source": wire.BrokerSource, "ce-type": typ,
		"ce-datacontenttype": event.ApplicationJSON, "ce-dataschema": schemas.EventSchemaID(typ),
	}
}

// handled records the ids of the events a handler was called with.
type handled struct {
	mu  sync.Mutex
	ids []string
}

func (h *handled) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, id)
}

func (h *handled) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

// Data of a core event type is checked against the type's schema before
// the handler: invalid data is dead-lettered as invalid_data with the
// schema error and never reaches the handler. A plugin's own event types
// have no schema: their data reaches the handler as it is.
func TestInvalidDataIsDeadLettered(t *testing.T) {
	bus := plugintest.Start(t)
	const other = "io.plugbus.plugin.other.thing.v1.done"
	p, err := sdk.New(schemas.Manifest{
		Name: "strict", Version: "1.0.0", Description: "reads alerts",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired, other}, MaxDeliver: 3,
			Backoff: []schemas.Duration{schemas.Duration(time.Millisecond)}},
	}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var got handled
	p.HandleEvent(schemas.TypeAlertFired, func(_ context.Context, e event.Event) error { got.add(e.ID()); return nil })
	p.HandleEvent(other, func(_ context.Context, e event.Event) error { got.add(e.ID()); return nil })
	bus.StartPlugin(t, p)

	alerts := wire.EventSubject(bus.Prefix(), schemas.TypeAlertFired)
	publishRaw(t, bus, alerts, coreAttrs("empty-object", schemas.TypeAlertFired), []byte(`{}`))
	publishRaw(t, bus, alerts, coreAttrs("no-data", schemas.TypeAlertFired), nil)
	publishRaw(t, bus, alerts, coreAttrs("not-json", schemas.TypeAlertFired), []byte(`{"id":`))
	publishRaw(t, bus, alerts, coreAttrs("bad-severity", schemas.TypeAlertFired),
		[]byte(`{"id":"a1","severity":"apocalyptic","summary":"s","status":"firing","fired_at":"2026-01-01T00:00:00Z"}`))
	// A valid one, from the broker.
	var fired schemas.AlertResponse
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "ok", Severity: schemas.SeverityInfo, Summary: "fine"}, &fired)
	// Another plugin's event: no schema, whatever its data.
	publishRaw(t, bus, wire.EventSubject(bus.Prefix(), other), map[string]string{
		"ce-specversion": "1.0", "ce-id": "own", "ce-source": wire.PluginSource("other"), "ce-type": other,
		"ce-datacontenttype": event.ApplicationJSON,
	}, []byte(`{}`))

	bus.WaitFor(t, func() bool {
		st := p.Stats()
		return st.EventsHandled == 2 && len(bus.DeadLetters(t, "strict")) == 4
	})
	if ids := strings.Join(got.list(), " "); ids != fired.EventID+" own" {
		t.Errorf("handler called with %s, want only the valid alert %s and own", ids, fired.EventID)
	}
	const prefix = "invalid_data: data of io.plugbus.alert.v1.fired does not match https://plugbus.io/schemas/events/alert/v1/fired.json: "
	wantReasons := map[string]string{
		"empty-object": prefix + `invalid_field: field "id": is required (field id)`,
		"no-data":      prefix + `invalid_field: field "id": is required (field id)`,
		"not-json":     prefix + `bad_request: the body is not valid JSON: unexpected EOF`,
		"bad-severity": prefix + `invalid_field: field "severity": must be one of "info", "warning", "critical" (got "apocalyptic") (field severity)`,
	}
	for _, dl := range bus.DeadLetters(t, "strict") {
		id := dl.Header.Get("ce-id")
		if want := wantReasons[id]; dl.Code != schemas.ReasonInvalidData || dl.Cause != schemas.CauseTerminated || dl.Deliveries != 1 || dl.Reason != want {
			t.Errorf("dead letter of %s: code %q cause %q deliveries %d reason %q\nwant code invalid_data, terminated at once, reason %q",
				id, dl.Code, dl.Cause, dl.Deliveries, dl.Reason, want)
		}
	}
	if st := p.Stats(); st.EventsInvalid != 4 || st.EventsTerminated != 4 || st.EventsFailed != 0 {
		t.Errorf("stats %+v, want 4 invalid (and terminated), no failure", st)
	}
}

// An event of another CloudEvents spec version is dead-lettered as
// malformed with a reason naming the version.
func TestUnsupportedSpecVersionIsDeadLettered(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(schemas.Manifest{Name: "strict", Version: "1.0.0", Description: "reads alerts",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}}}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	p.HandleEvent(schemas.TypeAlertFired, func(context.Context, event.Event) error { return nil })
	bus.StartPlugin(t, p)
	attrs := coreAttrs("future", schemas.TypeAlertFired)
	attrs["ce-specversion"] = "9.9"
	data, _ := json.Marshal(schemas.Alert{ID: "a", Severity: schemas.SeverityInfo, Summary: "s", Status: schemas.AlertFiring, FiredAt: time.Now()})
	publishRaw(t, bus, wire.EventSubject(bus.Prefix(), schemas.TypeAlertFired), attrs, data)
	bus.WaitFor(t, func() bool { return len(bus.DeadLetters(t, "strict")) == 1 })
	dl := bus.DeadLetters(t, "strict")[0]
	want := "malformed_event: not a CloudEvent: unsupported CloudEvents spec version 9.9 (plugbus reads 1.0)"
	if dl.Reason != want || dl.Code != schemas.ReasonMalformed {
		t.Errorf("dead letter: reason %q code %q, want %q (%s)", dl.Reason, dl.Code, want, schemas.ReasonMalformed)
	}
}
