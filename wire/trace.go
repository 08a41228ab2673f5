package wire

// This file is how trace context crosses NATS (docs/tracing.md): W3C Trace
// Context in lower-case headers on requests (traceparent, tracestate), and
// in the CloudEvents distributed-tracing extension on events (attributes
// traceparent and tracestate, so the ce-traceparent and ce-tracestate
// headers of the stored event). Call and CallHeader inject the caller's
// span context, Service hands it to its handlers; SetEventTrace and
// EventTrace do the same for events.
//
// Carrying context costs nothing when there is none: no span in the
// caller's context writes no header, and no header reads as the context as
// it was, without an allocation. Spans themselves are started through a
// Tracer, whose zero value (tracing off) starts none.

import (
	"context"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/plugbus/plugbus/schemas"
)

// Trace context headers of requests (W3C Trace Context), in lower case:
// NATS header names are case-sensitive in nats.go, and these are the names
// the W3C and OpenTelemetry propagators use. They are read in any case.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Attributes of the CloudEvents distributed-tracing extension: an event
// carries the trace context of the operation that produced it in them
// (headers ce-traceparent and ce-tracestate in binary mode).
const (
	ExtTraceparent = "traceparent"
	ExtTracestate  = "tracestate"
)

// TracerName is the instrumentation scope of every plugbus span.
const TracerName = "github.com/plugbus/plugbus"

// Span attribute keys plugbus sets (docs/tracing.md lists them per span).
const (
	AttrMessagingSystem      = attribute.Key("messaging.system")
	AttrMessagingDestination = attribute.Key("messaging.destination.name")
	AttrMessagingOperation   = attribute.Key("messaging.operation.type")
	AttrMessagingMessageID   = attribute.Key("messaging.message.id")
	AttrDeliveryAttempt      = attribute.Key("plugbus.delivery.attempt")
	AttrEndpoint             = attribute.Key("plugbus.api.endpoint")
	AttrReplayed             = attribute.Key("plugbus.api.replayed")
	AttrErrorCode            = attribute.Key("plugbus.error.code")
	AttrPlugin               = attribute.Key("plugbus.plugin")
	AttrHook                 = attribute.Key("plugbus.hook")
	AttrObject               = attribute.Key("plugbus.object")
	AttrChainID              = attribute.Key("plugbus.chain.id")
	AttrChainOutcome         = attribute.Key("plugbus.chain.outcome")
	AttrStep                 = attribute.Key("plugbus.step")
	AttrStepOutcome          = attribute.Key("plugbus.step.outcome")
	AttrPriority             = attribute.Key("plugbus.hook.priority")
	AttrFailurePolicy        = attribute.Key("plugbus.hook.failure_policy")
	AttrCallKind             = attribute.Key("plugbus.call.kind")
	AttrCallName             = attribute.Key("plugbus.call.name")
	AttrEventType            = attribute.Key("plugbus.event.type")
	AttrStreamSeq            = attribute.Key("plugbus.stream.seq")
)

// propagator is the W3C Trace Context propagator; it keeps no state.
var propagator propagation.TraceContext

// headerCarrier is a nats.Header as a propagation carrier: keys are set as
// given (lower case) and read in any case.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// hasTraceparent reports whether h has a traceparent header, in any case.
func hasTraceparent(h nats.Header) bool {
	if len(h) == 0 {
		return false
	}
	if _, ok := h[HeaderTraceparent]; ok {
		return true
	}
	for k := range h {
		if strings.EqualFold(k, HeaderTraceparent) {
			return true
		}
	}
	return false
}

// InjectTrace writes the span context of ctx into h as traceparent (and
// tracestate when there is one) and returns h, made when nil. Without a
// valid span context in ctx it returns h untouched.
func InjectTrace(ctx context.Context, h nats.Header) nats.Header {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return h
	}
	if h == nil {
		h = nats.Header{}
	}
	propagator.Inject(ctx, headerCarrier(h))
	return h
}

// ExtractTrace returns ctx carrying the span context of h's traceparent
// and tracestate headers as the remote parent; without a valid
// traceparent, ctx as it is.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if !hasTraceparent(h) {
		return ctx
	}
	return propagator.Extract(ctx, headerCarrier(h))
}

// eventCarrier is an event's extensions as a propagation carrier.
type eventCarrier struct{ e *event.Event }

func (c eventCarrier) Get(key string) string {
	if v, ok := c.e.Extensions()[key].(string); ok {
		return v
	}
	return ""
}

func (c eventCarrier) Set(key, value string) { c.e.SetExtension(key, value) }

func (c eventCarrier) Keys() []string { return []string{ExtTraceparent, ExtTracestate} }

// SetEventTrace sets e's traceparent and tracestate extension attributes
// to the span context of ctx, unless e already has a traceparent (an event
// published again keeps the context it was made in). Without a valid span
// context in ctx it does nothing.
func SetEventTrace(ctx context.Context, e *event.Event) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if _, ok := e.Extensions()[ExtTraceparent]; ok {
		return
	}
	propagator.Inject(ctx, eventCarrier{e})
}

// EventTrace returns ctx carrying the span context of e's traceparent
// and tracestate extension attributes as the remote parent; without a
// valid traceparent, ctx as it is.
func EventTrace(ctx context.Context, e *event.Event) context.Context {
	if _, ok := e.Extensions()[ExtTraceparent]; !ok {
		return ctx
	}
	return propagator.Extract(ctx, eventCarrier{e})
}

// Tracer starts plugbus spans. The zero Tracer is tracing off: it starts
// no span, and Start returns the context as it was and a span that records
// nothing, without allocating.
type Tracer struct {
	t trace.Tracer
}

// NewTracer returns a Tracer that starts spans from tp; a nil tp is
// tracing off (the zero Tracer).
func NewTracer(tp trace.TracerProvider) Tracer {
	if tp == nil {
		return Tracer{}
	}
	return Tracer{t: tp.Tracer(TracerName)}
}

// Enabled reports whether the Tracer starts spans.
func (t Tracer) Enabled() bool { return t.t != nil }

// Start starts a span named "op target" (target may be empty) of kind, as
// a child of the span (or remote span context) in ctx. Tracing off, it
// returns ctx and a span that records nothing. Set attributes only when
// span.IsRecording(), so that tracing off costs nothing.
func (t Tracer) Start(ctx context.Context, kind trace.SpanKind, op, target string) (context.Context, trace.Span) {
	if t.t == nil {
		return ctx, noop.Span{}
	}
	name := op
	if target != "" {
		name = op + " " + target
	}
	return t.t.Start(ctx, name, trace.WithSpanKind(kind))
}

// EndSpan ends span, marking it failed with err's plugbus error code and
// message when err is not nil.
func EndSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		e := schemas.AsError(err)
		span.SetAttributes(AttrErrorCode.String(e.Code))
		span.SetStatus(codes.Error, e.Message)
	}
	span.End()
}
