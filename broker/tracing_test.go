package broker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// An event left in a record's outbox keeps the trace context of the
// operation that made it: the sweeper publishes it, with no request (and
// no span) of its own, still carrying ce-traceparent and ce-tracestate.
func TestOutboxKeepsTraceContext(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("vendor=value")
	opCtx := trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true}))

	alert := schemas.Alert{ID: "traced", Severity: "warning", Summary: "s", Status: schemas.AlertFiring, FiredAt: time.Now().UTC()}
	ev, err := NewEvent(schemas.TypeAlertFired, alert, WithSubject("alert/traced"), WithID(eventID("op-t", 0)))
	if err != nil {
		t.Fatal(err)
	}
	wire.SetEventTrace(opCtx, ev)
	pend := pendingOf(ev)
	body, err := encodeRecord(alert, recordMeta{Op: "op-t", Events: []string{ev.ID()}, Pending: []pendingEvent{pend}})
	if err != nil {
		t.Fatal(err)
	}
	var stored struct {
		Pending []map[string]any `json:"_pending"`
	}
	if err := json.Unmarshal(body, &stored); err != nil || len(stored.Pending) != 1 ||
		stored.Pending[0]["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || stored.Pending[0]["tracestate"] != "vendor=value" {
		t.Fatalf("outbox entry %s: want the trace context kept with the event", body)
	}
	if _, err := tb.b.st.alerts.Create(ctx, "traced", body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the outbox cleared", func() bool {
		e, err := tb.b.st.alerts.Get(ctx, "traced")
		return err == nil && !strings.Contains(string(e.Value()), "_pending")
	})
	got := eventsOf(t, tb, schemas.TypeAlertFired, "alert/traced")
	if len(got) != 1 {
		t.Fatalf("published %d events, want 1", len(got))
	}
	if tp, st := got[0].Header.Get("ce-traceparent"), got[0].Header.Get("ce-tracestate"); tp != pend.Traceparent || st != "vendor=value" {
		t.Fatalf("swept event has ce-traceparent %q ce-tracestate %q, want %q and vendor=value", tp, st, pend.Traceparent)
	}
}

// A failed API call's span says so, with the error code.
func TestAPISpanRecordsErrors(t *testing.T) {
	s := startServer(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), TracerProvider: tp})
	err := tb.call(t, schemas.APIJobsGet, schemas.JobRef{Name: "missing", Version: "1"}, nil)
	wantCode(t, err, schemas.CodeNotFound, "")
	var span sdktrace.ReadOnlySpan
	waitFor(t, "the API span", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "api "+schemas.APIJobsGet {
				span = s
				return true
			}
		}
		return false
	})
	code := ""
	for _, kv := range span.Attributes() {
		if kv.Key == wire.AttrErrorCode {
			code = kv.Value.AsString()
		}
	}
	if span.Status().Code.String() != "Error" || code != schemas.CodeNotFound || span.SpanKind() != trace.SpanKindServer || span.Parent().IsValid() {
		t.Fatalf("span %s: status %v, code %q, kind %s, parent %v", span.Name(), span.Status(), code, span.SpanKind(), span.Parent())
	}
}

// Tracing off, encoding an event for the stream costs what the codec
// does and nothing more: giving it the caller's trace context allocates
// nothing when there is none.
func TestPublishEncodeTracingOffAllocations(t *testing.T) {
	p := &Publisher{prefix: "plugbus", metrics: newMetrics()}
	ev, err := NewEvent(schemas.TypeJobDeployed, map[string]string{"name": "x"}, WithSubject("job/x"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	subject := wire.EventSubject("plugbus", ev.Type())
	codec := testing.AllocsPerRun(200, func() { _, _ = wire.EncodeEvent(ctx, wire.EventSubject("plugbus", ev.Type()), ev) })
	encode := testing.AllocsPerRun(200, func() { _, _ = p.encode(ctx, ev) })
	if encode > codec {
		t.Fatalf("publishing encodes with %v allocations, the codec alone %v: tracing off must add none", encode, codec)
	}
	if msg, _ := p.encode(ctx, ev); msg.Subject != subject || msg.Header.Get("ce-traceparent") != "" {
		t.Fatalf("encoded %s %v", msg.Subject, msg.Header)
	}
}
