package wire_test

import (
	"context"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/wire"
)

func recorder(t *testing.T) (*tracetest.SpanRecorder, wire.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, wire.NewTracer(tp)
}

// TestCallCarriesTrace: a call made in a span carries it in lower-case
// traceparent (and tracestate) headers, and the Service hands it to the
// handler as the remote parent; a call made with no span sends no header.
func TestCallCarriesTrace(t *testing.T) {
	srv := testnats.Start(t, false)
	nc := testnats.Connect(t, srv.ClientURL())
	svc, err := wire.NewService(nc, wire.Config{Name: "trace-test", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	type seen struct {
		hdr nats.Header
		sc  trace.SpanContext
	}
	got := make(chan seen, 2)
	err = svc.AddEndpoint(wire.Endpoint{Name: "echo", Subject: "trace.echo", Handler: func(ctx context.Context, req *wire.Request) {
		got <- seen{req.Headers(), trace.SpanContextFromContext(ctx)}
		_ = req.Reply(map[string]string{}, nil)
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, tr := recorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sctx, span := tr.Start(ctx, trace.SpanKindClient, "test", "")
	ts, err := trace.ParseTraceState("vendor=opaque")
	if err != nil {
		t.Fatal(err)
	}
	sctx = trace.ContextWithSpanContext(sctx, span.SpanContext().WithTraceState(ts))
	if err := wire.Call(sctx, nc, "trace.echo", map[string]string{}, nil); err != nil {
		t.Fatal(err)
	}
	span.End()
	s := <-got
	if len(s.hdr[wire.HeaderTraceparent]) != 1 || s.hdr[wire.HeaderTracestate][0] != "vendor=opaque" {
		t.Fatalf("request headers %v: want lower-case traceparent and tracestate", s.hdr)
	}
	if s.sc.TraceID() != span.SpanContext().TraceID() || s.sc.SpanID() != span.SpanContext().SpanID() || !s.sc.IsRemote() {
		t.Fatalf("handler's span context %v, want the caller's %v as remote", s.sc, span.SpanContext())
	}

	if err := wire.Call(ctx, nc, "trace.echo", map[string]string{}, nil); err != nil {
		t.Fatal(err)
	}
	s = <-got
	if _, ok := s.hdr[wire.HeaderTraceparent]; ok || s.sc.IsValid() {
		t.Fatalf("a call without a span sent %v", s.hdr)
	}
}

func TestExtractTraceAnyCase(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		ctx := wire.ExtractTrace(context.Background(), nats.Header{key: {tp}})
		if sc := trace.SpanContextFromContext(ctx); sc.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || !sc.IsSampled() {
			t.Errorf("%s: span context %v", key, sc)
		}
	}
	ctx := wire.ExtractTrace(context.Background(), nats.Header{"traceparent": {"garbage"}})
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("a malformed traceparent gave a span context")
	}
}

// TestEventTrace: an event made in a span carries it in its traceparent
// extension (the ce-traceparent header), keeps the one it has when
// published again from elsewhere, and gives it back on the other side.
func TestEventTrace(t *testing.T) {
	_, tr := recorder(t)
	ctx, span := tr.Start(context.Background(), trace.SpanKindServer, "test", "")
	defer span.End()
	e := sample(t)
	e.SetExtension(wire.ExtTraceparent, nil)
	wire.SetEventTrace(ctx, e)
	msg, err := wire.EncodeEvent(ctx, "s", e)
	if err != nil {
		t.Fatal(err)
	}
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if got := msg.Header.Get("ce-traceparent"); got != want {
		t.Fatalf("ce-traceparent %q, want %q", got, want)
	}
	if _, ok := msg.Header["traceparent"]; ok {
		t.Fatal("an event carries its trace context in the ce- extension only")
	}
	// Another span does not replace it.
	other, span2 := tr.Start(context.Background(), trace.SpanKindServer, "other", "")
	defer span2.End()
	wire.SetEventTrace(other, e)
	if e.Extensions()[wire.ExtTraceparent] != want {
		t.Fatalf("traceparent replaced: %v", e.Extensions())
	}
	dec, err := wire.DecodeEvent(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.SpanContextFromContext(wire.EventTrace(context.Background(), dec))
	if sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("event's span context %v, want %v", sc, span.SpanContext())
	}
}

// TestTraceOffAllocatesNothing: with no span and tracing off, carrying
// trace context on requests and events, and starting and ending spans,
// allocate nothing.
func TestTraceOffAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	hdr := nats.Header{wire.HeaderTimeout: {"1000"}}
	e := event.New()
	e.SetID("x")
	off := wire.Tracer{}
	cases := map[string]func(){
		"InjectTrace":   func() { _ = wire.InjectTrace(ctx, hdr) },
		"ExtractTrace":  func() { _ = wire.ExtractTrace(ctx, hdr) },
		"SetEventTrace": func() { wire.SetEventTrace(ctx, &e) },
		"EventTrace":    func() { _ = wire.EventTrace(ctx, &e) },
		"Tracer.Start": func() {
			c, span := off.Start(ctx, trace.SpanKindServer, "api", "jobs.deploy")
			if span.IsRecording() {
				t.Fatal("the zero Tracer records")
			}
			_ = c
			wire.EndSpan(span, nil)
		},
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per call with tracing off", name, n)
		}
	}
	if off.Enabled() {
		t.Error("the zero Tracer says it is enabled")
	}
	if _, ok := hdr[wire.HeaderTraceparent]; ok || len(e.Extensions()) != 0 {
		t.Error("trace context written with no span")
	}
}
