package sdk

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// TestTracingOffAddsNoAllocations: with tracing off, what the delivery
// path does for tracing (reading the event's trace context, the span
// around the handler) allocates nothing: the whole call of a handler
// through invoke allocates no more than the handler itself (nothing).
func TestTracingOffAddsNoAllocations(t *testing.T) {
	p, err := New(schemas.Manifest{Name: "allocs", Version: "1.0.0", Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	ev := event.New()
	ev.SetID("1")
	ev.SetType(schemas.TypeJobDeployed)
	call := &Call{Kind: KindEvent, Name: ev.Type(), Request: ev}
	h := func(context.Context, *Call) (any, error) { return nil, nil }
	base := context.Background()
	n := testing.AllocsPerRun(200, func() {
		ctx := wire.EventTrace(base, &ev)
		_, _ = p.invoke(ctx, call, h)
	})
	if n != 0 {
		t.Fatalf("a handler call with tracing off allocates %v times", n)
	}
}

// With a tracer provider, invoke starts a span per call: a consumer span
// named "process TYPE" for events, a server span for the rest, a child
// of the caller's span context.
func TestInvokeSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	p, err := New(schemas.Manifest{Name: "spans", Version: "1.0.0", Description: "d"}, WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	parent := wire.ExtractTrace(context.Background(), map[string][]string{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	for _, c := range []*Call{{Kind: KindEvent, Name: schemas.TypeJobDeployed}, {Kind: KindAction, Name: "reboot"}, {Kind: KindVerify, Name: schemas.VerbVerify}} {
		_, _ = p.invoke(parent, c, func(ctx context.Context, _ *Call) (any, error) {
			if !trace.SpanFromContext(ctx).IsRecording() {
				t.Errorf("%s: the handler's ctx has no recording span", c.Kind)
			}
			return nil, nil
		})
	}
	want := map[string]trace.SpanKind{"process " + schemas.TypeJobDeployed: trace.SpanKindConsumer, "action reboot": trace.SpanKindServer, "verify": trace.SpanKindServer}
	for _, s := range rec.Ended() {
		kind, ok := want[s.Name()]
		if !ok || s.SpanKind() != kind || s.Parent().SpanID().String() != "00f067aa0ba902b7" || s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("span %s kind %s parent %s", s.Name(), s.SpanKind(), s.Parent().SpanID())
		}
		delete(want, s.Name())
	}
	if len(want) != 0 {
		t.Errorf("missing spans %v", want)
	}
}
