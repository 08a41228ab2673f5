package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// caseHeader marks the suite's bad events; dead letters keep every header
// of the original.
const caseHeader = "Faults-Case"

// badEvent is a message published straight into PLUGBUS_EVENTS, on a
// subject notify-webhook consumes, with the code its dead letter must have.
type badEvent struct {
	name string
	code string
	msg  func(t *testing.T) *nats.Msg
}

// alertEvent is a well-formed alert.v1.fired message for alert id; edit
// changes the event before it is encoded.
func alertEvent(t *testing.T, id string, edit func(e *event.Event)) *nats.Msg {
	t.Helper()
	e := event.New()
	e.SetID("faults-" + id)
	e.SetType(schemas.TypeAlertFired)
	e.SetSource(wire.BrokerSource)
	e.SetSubject("alert/" + id)
	e.SetTime(time.Now())
	e.SetDataSchema(schemas.EventSchemaID(schemas.TypeAlertFired))
	alert := schemas.Alert{ID: id, Severity: schemas.SeverityCritical, Summary: "forged " + id, Status: schemas.AlertFiring, FiredAt: time.Now().UTC()}
	if err := e.SetData(event.ApplicationJSON, alert); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&e)
	}
	msg, err := wire.EncodeEvent(context.Background(), wire.EventSubject(wire.DefaultPrefix, schemas.TypeAlertFired), &e)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

var badEvents = []badEvent{
	{"not-a-cloudevent", schemas.ReasonMalformed, func(t *testing.T) *nats.Msg {
		return &nats.Msg{Header: nats.Header{}, Data: []byte("disk full on m1, not a CloudEvent")}
	}},
	{"specversion-9.9", schemas.ReasonMalformed, func(t *testing.T) *nats.Msg {
		m := alertEvent(t, "mal-specversion", nil)
		m.Header.Set("ce-specversion", "9.9")
		return m
	}},
	{"empty-object-data", schemas.ReasonInvalidData, func(t *testing.T) *nats.Msg {
		m := alertEvent(t, "mal-empty-object", nil)
		m.Data = []byte("{}")
		return m
	}},
	{"empty-data", schemas.ReasonInvalidData, func(t *testing.T) *nats.Msg {
		m := alertEvent(t, "mal-empty", nil)
		m.Data = nil
		return m
	}},
	{"foreign-type-on-core-subject", schemas.ReasonUntrusted, func(t *testing.T) *nats.Msg {
		return alertEvent(t, "mal-foreign-type", func(e *event.Event) { e.SetType(schemas.TypeJobDeployed) })
	}},
	{"plugin-source-on-core-subject", schemas.ReasonUntrusted, func(t *testing.T) *nats.Msg {
		return alertEvent(t, "mal-plugin-source", func(e *event.Event) { e.SetSource("/plugbus/plugins/notify-webhook") })
	}},
}

// advisoriesDone reports whether the broker's dead-letter path has handled
// every advisory so far.
func advisoriesDone(t *testing.T, js jetstream.JetStream) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, schemas.StreamAdvisories, "broker_dlq")
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// Scenario 4a: events in the stream that no plugin can trust or read —
// not a CloudEvent, spec version 9.9, `{}` or no data for alert.v1.fired, a
// job type on the alert subject, a plugin's source on a core subject —
// each dead-lettered once with its named reason, counted in /metrics, and
// never POSTed.
func TestMalformedEvents(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	sk := newSink(t)
	b.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	js := b.jetstream(t)
	before := b.metrics(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subject := wire.EventSubject(wire.DefaultPrefix, schemas.TypeAlertFired)
	acked := 0
	for i, be := range badEvents {
		m := be.msg(t)
		m.Subject = subject
		m.Header.Set(caseHeader, be.name)
		if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("faults-bad-%d-%d", i, time.Now().UnixNano()))); err != nil {
			t.Fatalf("publish %s: %v", be.name, err)
		}
		acked++
	}
	// A good alert after them: once it is POSTed, and the consumer and the
	// dead-letter path are idle, every bad event has been dealt with.
	if _, err := b.admin(t).FireAlert(ctx, schemas.AlertFireRequest{ID: "mal-control", Severity: schemas.SeverityInfo, Summary: "control"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the control alert POSTed, the consumer and the dead-letter path idle", waitLimit, func() bool {
		return sk.distinct("/ok", "fired", map[string]bool{"mal-control": true}) == 1 && consumerIdle(t, js, "notify-webhook") && advisoriesDone(t, js)
	})
	stored := 0
	for _, m := range readStream(t, js, schemas.StreamEvents, subject) {
		if m.Header.Get(caseHeader) != "" {
			stored++
		}
	}
	letters := map[string][]streamMsg{}
	for _, m := range readStream(t, js, schemas.StreamDLQ, wire.DLQSubject(wire.DefaultPrefix, schemas.ConsumerName("notify-webhook"))) {
		letters[m.Header.Get(caseHeader)] = append(letters[m.Header.Get(caseHeader)], m)
	}
	after := b.metrics(t)
	delta := func(name string, labels map[string]string) int {
		return int(counter(after, name, labels) - counter(before, name, labels))
	}

	lost, dups, unexpected := 0, 0, 0
	var got []string
	for _, be := range badEvents {
		ls := letters[be.name]
		switch {
		case len(ls) == 0:
			lost++
			t.Errorf("%s: no dead letter (want one with code %s)", be.name, be.code)
			continue
		case len(ls) > 1:
			dups++
			t.Errorf("%s: %d dead letters, want 1", be.name, len(ls))
		}
		code, reason := ls[0].Header.Get(schemas.HeaderDLQCode), ls[0].Header.Get(schemas.HeaderDLQReason)
		got = append(got, be.name+"→"+code)
		if code != be.code || !strings.HasPrefix(reason, be.code+": ") {
			t.Errorf("%s: dead letter with code %q, reason %q; want code %s", be.name, code, reason, be.code)
		}
	}
	// Never POSTed: the sink got the control alert and nothing else.
	posted := sk.total() - 1
	if posted != 0 {
		unexpected = posted
		t.Errorf("%d bad events were POSTed by notify-webhook: %v, bodies naming no alert: %q", posted, sk.counts("/ok", "fired"), sk.oddBodies())
	}
	terminated := delta("plugbus_dead_letters_total", map[string]string{"consumer": schemas.ConsumerName("notify-webhook"), "cause": schemas.CauseTerminated})
	badInput := map[string]int{}
	for _, k := range []string{schemas.ReasonMalformed, schemas.ReasonInvalidData} {
		badInput[k] = delta("plugbus_bad_input_total", map[string]string{"kind": k})
	}
	if terminated != len(badEvents) {
		t.Errorf("plugbus_dead_letters_total{cause=terminated} rose by %d, want %d", terminated, len(badEvents))
	}
	if badInput[schemas.ReasonMalformed] != 2 || badInput[schemas.ReasonInvalidData] != 2 {
		t.Errorf("plugbus_bad_input_total rose by %v, want malformed_event 2, invalid_data 2", badInput)
	}
	dead := 0
	for _, ls := range letters {
		dead += len(ls)
	}
	record(t, Row{Scenario: "malformed-events", Offered: num(len(badEvents)), Acknowledged: num(acked), Stored: num(stored), Delivered: num(posted),
		Lost: num(lost), Duplicated: num(dups), Unexpected: num(unexpected),
		Notes: fmt.Sprintf("published with the broker's credentials on %s; %d dead letters (%s); /metrics: dead_letters{terminated} +%d, bad_input{malformed_event} +%d, bad_input{invalid_data} +%d; lost = no dead letter, unexpected = POSTed",
			subject, dead, strings.Join(got, ", "), terminated, badInput[schemas.ReasonMalformed], badInput[schemas.ReasonInvalidData]),
		Seconds: time.Since(start).Seconds()})
}

// badRequest is an alerts.fire body that must be refused.
type badRequest struct {
	name, id string
	body     []byte
	code     string
	field    string
}

func badRequests() []badRequest {
	big := func(total int, id string) []byte {
		head := fmt.Sprintf(`{"id":%q,"severity":"critical","summary":"`, id)
		return []byte(head + strings.Repeat("x", total-len(head)-2) + `"}`)
	}
	return []badRequest{
		{"not JSON", "", []byte("severity=critical summary=disk"), schemas.CodeBadRequest, ""},
		{"wrong type", "api-wrong-type", []byte(`{"id":"api-wrong-type","severity":5,"summary":"disk"}`), schemas.CodeInvalidField, "severity"},
		{"unknown field", "api-unknown-field", []byte(`{"id":"api-unknown-field","severity":"warning","summary":"disk","sevrity":"info"}`), schemas.CodeInvalidField, "sevrity"},
		{"1,048,550-byte alert", "api-big", big(1_048_550, "api-big"), schemas.CodeTooLarge, ""},
		{"2 MiB request", "api-huge", big(2<<20, "api-huge"), schemas.CodeTooLarge, ""},
	}
}

// Scenario 4b: alerts.fire bodies that are not JSON, have a wrong type or
// an unknown field, or are too large: each refused with its named error,
// counted in plugbus_bad_input_total, and nothing stored.
func TestBadAPIInput(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	sk := newSink(t)
	b.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/ok"))
	nc := b.connect(t, b.adminCreds())
	js := b.jetstream(t)
	before := b.metrics(t)
	reqs := badRequests()
	if n := len(reqs[3].body); n != 1_048_550 {
		t.Fatalf("the oversized alert is %d bytes, want 1,048,550", n)
	}
	acked := 0
	var got []string
	wantKinds := map[string]int{}
	for _, r := range reqs {
		wantKinds[r.code]++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msg, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: wire.APISubject(wire.DefaultPrefix, schemas.APIAlertsFire), Data: r.body,
			Header: nats.Header{wire.HeaderIdempotencyKey: {"faults-bad-" + r.name}}})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		err = wire.DecodeReply(msg, nil)
		if err == nil {
			acked++
			t.Errorf("%s: accepted", r.name)
			continue
		}
		e := schemas.AsError(err)
		got = append(got, fmt.Sprintf("%s→%s", r.name, e.Code))
		if e.Code != r.code || (r.field != "" && e.Field != r.field) {
			t.Errorf("%s: %s (field %q): %s; want %s naming %q", r.name, e.Code, e.Field, e.Message, r.code, r.field)
		}
	}
	after := b.metrics(t)
	var counted []string
	for kind, want := range wantKinds {
		d := int(counter(after, "plugbus_bad_input_total", map[string]string{"kind": kind}) - counter(before, "plugbus_bad_input_total", map[string]string{"kind": kind}))
		counted = append(counted, fmt.Sprintf("%s +%d", kind, d))
		if d != want {
			t.Errorf("plugbus_bad_input_total{kind=%s} rose by %d, want %d", kind, d, want)
		}
	}
	sort.Strings(counted)
	// Nothing stored: no record, no event. The control alert after them
	// shows the stream and the webhook were working.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.admin(t).FireAlert(ctx, schemas.AlertFireRequest{ID: "api-control", Severity: schemas.SeverityInfo, Summary: "control"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the control alert POSTed and the consumer idle", waitLimit, func() bool {
		return sk.distinct("/ok", "fired", map[string]bool{"api-control": true}) == 1 && consumerIdle(t, js, "notify-webhook")
	})
	kv, err := js.KeyValue(ctx, schemas.BucketAlerts)
	if err != nil {
		t.Fatal(err)
	}
	events := storedAlerts(t, js, schemas.TypeAlertFired)
	stored, unexpected := 0, 0
	for _, r := range reqs {
		if r.id == "" {
			continue
		}
		_, kerr := kv.Get(ctx, r.id)
		if kerr == nil || len(events[r.id]) > 0 {
			stored++
			unexpected++
			t.Errorf("%s: refused but stored (record: %v, events: %d)", r.name, kerr == nil, len(events[r.id]))
		}
	}
	posted := sk.total() - 1
	if posted != 0 {
		unexpected += posted
		t.Errorf("%d refused alerts POSTed", posted)
	}
	if len(events) != 1 {
		t.Errorf("the stream holds fired events of %d alerts, want only the control's", len(events))
	}
	raw, _ := json.Marshal(got)
	_ = raw
	record(t, Row{Scenario: "bad-api-input", Offered: num(len(reqs)), Acknowledged: num(acked), Stored: num(stored), Delivered: num(posted),
		Lost: num(0), Duplicated: num(0), Unexpected: num(unexpected),
		Notes:   fmt.Sprintf("answers: %s; /metrics bad_input %s; no record in plugbus_alerts, no event", strings.Join(got, ", "), strings.Join(counted, ", ")),
		Seconds: time.Since(start).Seconds()})
}
