package sdk

import (
	"context"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/wire"
)

// Kinds of handler calls, as Call.Kind says.
const (
	KindInit   = "init"
	KindConfig = "config"
	KindVerify = "verify"
	KindAction = "action"
	KindHook   = "hook"
	KindEvent  = "event"
)

// Call describes one handler call as middleware sees it.
type Call struct {
	// Kind is one of the Kind* constants.
	Kind string
	// Name is what is being handled: the action command, the hook point,
	// the event type, or the verb for init, config and verify.
	Name string
	// Request is the handler's input: *Action, *HookRequest, event.Event,
	// schemas.InitRequest or Config.
	Request any
}

// Next runs the rest of the chain: the next middleware, and finally the
// handler. It returns the handler's result (an action's result, a hook's
// *schemas.HookResponse, init's metadata; nil for events, config and
// verify) and its error.
type Next func(ctx context.Context, c *Call) (any, error)

// Middleware wraps every handler call of a plugin, Watermill-style: it may
// act before and after calling next (log, count, trace, time), change the
// context, or answer without calling next.
type Middleware func(next Next) Next

// Use adds middleware around every handler call (init, config, verify,
// actions, hooks and events). The first one added is the outermost. Call
// it before Run.
func (p *Plugin) Use(mw ...Middleware) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range mw {
		if m == nil {
			panic("sdk: Use: nil middleware")
		}
		p.middleware = append(p.middleware, m)
	}
}

// invoke runs h for c through the middleware chain, turning a panic
// anywhere in it into an error, in a span of its own when tracing is on.
func (p *Plugin) invoke(ctx context.Context, c *Call, h Next) (result any, err error) {
	kind, op, target := trace.SpanKindServer, c.Kind, c.Name
	switch c.Kind {
	case KindEvent:
		kind, op = trace.SpanKindConsumer, "process"
	case KindInit, KindConfig, KindVerify:
		target = ""
	}
	callKind, callName, start := c.Kind, c.Name, time.Now()
	ctx, span := p.opts.tracer.Start(ctx, kind, op, target)
	if span.IsRecording() {
		span.SetAttributes(wire.AttrPlugin.String(p.manifest.Name), wire.AttrCallKind.String(c.Kind), wire.AttrCallName.String(c.Name))
		if c.Kind == KindEvent {
			eventSpanAttributes(ctx, span, c)
		}
	}
	defer func() {
		p.metrics.observe(callKind, callName, err, time.Since(start))
		wire.EndSpan(span, err)
	}()
	p.mu.RLock()
	mws := p.middleware
	p.mu.RUnlock()
	next := h
	for i := len(mws) - 1; i >= 0; i-- {
		next = mws[i](next)
	}
	err = safely(func() error {
		var herr error
		result, herr = next(ctx, c)
		return herr
	})
	return result, err
}

// eventSpanAttributes describes the event an event handler's span is
// about: the event from the call, its delivery from ctx.
func eventSpanAttributes(ctx context.Context, span trace.Span, c *Call) {
	span.SetAttributes(wire.AttrMessagingSystem.String("nats"), wire.AttrMessagingOperation.String("process"))
	if ev, ok := c.Request.(event.Event); ok {
		span.SetAttributes(wire.AttrMessagingMessageID.String(ev.ID()), wire.AttrEventType.String(ev.Type()))
	}
	if d, ok := ctx.Value(deliveryKey{}).(Delivery); ok {
		span.SetAttributes(wire.AttrMessagingDestination.String(d.Subject), wire.AttrDeliveryAttempt.Int64(int64(d.NumDelivered)),
			wire.AttrStreamSeq.Int64(int64(d.StreamSeq)))
	}
}
