package plugintest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

// seenTrace keeps the span context a handler's ctx had, by event id or
// hook object.
type seenTrace struct {
	mu   sync.Mutex
	seen map[string]trace.SpanContext
}

func (s *seenTrace) put(key string, ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]trace.SpanContext{}
	}
	s.seen[key] = trace.SpanContextFromContext(ctx)
}

func (s *seenTrace) get(key string) (trace.SpanContext, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.seen[key]
	return sc, ok
}

// tracedPlugins starts a plugin with a job.pre_deploy hook and one that
// handles job.deployed events, both tracing to tp when it is not nil.
func tracedPlugins(t *testing.T, bus *plugintest.Bus, tp trace.TracerProvider) (hooks, events *seenTrace) {
	t.Helper()
	hooks, events = &seenTrace{}, &seenTrace{}
	opts := []sdk.Option{sdk.WithPrefix(bus.Prefix())}
	if tp != nil {
		opts = append(opts, sdk.WithTracerProvider(tp))
	}
	gate, err := sdk.New(schemas.Manifest{Name: "gate", Version: "1.0.0", Description: "traced gate",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	gate.HandleHook(schemas.HookJobPreDeploy, func(ctx context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
		hooks.put(req.Object, ctx)
		return sdk.Continue(), nil
	})
	watcher, err := sdk.New(schemas.Manifest{Name: "watcher", Version: "1.0.0", Description: "traced watcher",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeJobDeployed}}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	watcher.HandleEvent(schemas.TypeJobDeployed, func(ctx context.Context, ev event.Event) error {
		events.put(ev.ID(), ctx)
		return nil
	})
	bus.StartPlugin(t, gate)
	bus.StartPlugin(t, watcher)
	return hooks, events
}

// storedTraceparent reads the ce-traceparent header of the stored event.
func storedTraceparent(t *testing.T, bus *plugintest.Bus, eventID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := bus.JetStream().Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, wire.EventSubject(bus.Prefix(), schemas.TypeJobDeployed))
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get("ce-id"); id != eventID {
		t.Fatalf("last job.deployed event is %s, want %s", id, eventID)
	}
	return msg.Header.Get("ce-traceparent")
}

// TestOneTraceAcrossTheBus: a deploy made in a span, through sdk/client,
// is one trace from the caller through the broker's API call, its
// job.pre_deploy chain and step, the hook plugin's handler, the stored
// CloudEvent (ce-traceparent) to the event handler of another plugin —
// with the spans of each side parented as documented in docs/tracing.md.
func TestOneTraceAcrossTheBus(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	bus := plugintest.Start(t, plugintest.WithBrokerConfig(func(c *broker.Config) { c.TracerProvider = tp }))
	hooks, events := tracedPlugins(t, bus, tp)

	ctx, root := tp.Tracer("test").Start(context.Background(), "operator deploys")
	resp, err := client.New(bus.Conn(), client.WithPrefix(bus.Prefix())).DeployJob(ctx,
		schemas.JobDeployRequest{Name: "traced", Version: "1", Image: "busybox"})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := root.SpanContext().TraceID()

	hookSC, ok := hooks.get("job/traced")
	if !ok || hookSC.TraceID() != traceID {
		t.Fatalf("hook handler's trace %v (called: %v), want %v", hookSC.TraceID(), ok, traceID)
	}
	var evSC trace.SpanContext
	bus.WaitFor(t, func() bool { evSC, ok = events.get(resp.EventID); return ok })
	if evSC.TraceID() != traceID {
		t.Fatalf("event handler's trace %v, want %v", evSC.TraceID(), traceID)
	}

	// The spans, each a child of the one before it.
	var byName map[string]sdktrace.ReadOnlySpan
	bus.WaitFor(t, func() bool {
		byName = map[string]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == traceID {
				byName[s.Name()] = s
			}
		}
		// The API span ends once its reply is sent, so maybe after the
		// event handler's.
		return byName["process "+schemas.TypeJobDeployed] != nil && byName["api "+schemas.APIJobsDeploy] != nil
	})
	chain := []struct {
		name, parent string
		kind         trace.SpanKind
	}{
		{"api " + schemas.APIJobsDeploy, "operator deploys", trace.SpanKindServer},
		{"hook.chain " + schemas.HookJobPreDeploy, "api " + schemas.APIJobsDeploy, trace.SpanKindInternal},
		{"hook.step " + schemas.HookJobPreDeploy, "hook.chain " + schemas.HookJobPreDeploy, trace.SpanKindClient},
		{"hook " + schemas.HookJobPreDeploy, "hook.step " + schemas.HookJobPreDeploy, trace.SpanKindServer},
		{"process " + schemas.TypeJobDeployed, "api " + schemas.APIJobsDeploy, trace.SpanKindConsumer},
	}
	for _, c := range chain {
		s, parent := byName[c.name], byName[c.parent]
		if s == nil || parent == nil {
			t.Fatalf("spans of the trace: %v; want %s (child of %s)", names(byName), c.name, c.parent)
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != c.kind {
			t.Errorf("%s: parent %s kind %s, want parent %s kind %s", c.name, s.Parent().SpanID(), s.SpanKind(), parent.SpanContext().SpanID(), c.kind)
		}
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[string]string {
		out := map[string]string{}
		for _, kv := range s.Attributes() {
			out[string(kv.Key)] = kv.Value.Emit()
		}
		return out
	}
	for name, want := range map[string]map[string]string{
		"api " + schemas.APIJobsDeploy:           {"plugbus.api.endpoint": schemas.APIJobsDeploy, "messaging.system": "nats"},
		"hook.step " + schemas.HookJobPreDeploy:  {"plugbus.plugin": "gate", "plugbus.step.outcome": schemas.StepContinued, "plugbus.hook.failure_policy": "fail"},
		"hook.chain " + schemas.HookJobPreDeploy: {"plugbus.object": "job/traced", "plugbus.chain.outcome": schemas.ChainCompleted},
		"hook " + schemas.HookJobPreDeploy:       {"plugbus.plugin": "gate", "plugbus.call.kind": sdk.KindHook},
		"process " + schemas.TypeJobDeployed:     {"plugbus.plugin": "watcher", "messaging.message.id": resp.EventID, "plugbus.delivery.attempt": "1"},
	} {
		got := attrs(byName[name])
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: attribute %s = %q, want %q (all: %v)", name, k, got[k], v, got)
			}
		}
	}

	// The stored event carries the API call's span context.
	api := byName["api "+schemas.APIJobsDeploy].SpanContext()
	if tp := storedTraceparent(t, bus, resp.EventID); tp != "00-"+api.TraceID().String()+"-"+api.SpanID().String()+"-01" {
		t.Fatalf("stored ce-traceparent %q, want the API span %s", tp, api.SpanID())
	}
}

func names(m map[string]sdktrace.ReadOnlySpan) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTraceCarriedWithTracingOff: with tracing off in the broker and the
// plugins (no TracerProvider anywhere), a caller's trace context still
// reaches the hook handler, the stored event and the event handler, and
// nothing else changes.
func TestTraceCarriedWithTracingOff(t *testing.T) {
	bus := plugintest.Start(t)
	hooks, events := tracedPlugins(t, bus, nil)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, root := tp.Tracer("test").Start(context.Background(), "caller")
	resp, err := client.New(bus.Conn(), client.WithPrefix(bus.Prefix())).DeployJob(ctx,
		schemas.JobDeployRequest{Name: "untraced", Version: "1", Image: "busybox"})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	want := root.SpanContext()
	if sc, ok := hooks.get("job/untraced"); !ok || sc.TraceID() != want.TraceID() || sc.SpanID() != want.SpanID() || !sc.IsRemote() {
		t.Fatalf("hook handler's span context %v, want the caller's %v", sc, want)
	}
	var sc trace.SpanContext
	var ok bool
	bus.WaitFor(t, func() bool { sc, ok = events.get(resp.EventID); return ok })
	if sc.TraceID() != want.TraceID() || sc.SpanID() != want.SpanID() {
		t.Fatalf("event handler's span context %v, want the caller's %v", sc, want)
	}
	if got := storedTraceparent(t, bus, resp.EventID); got != "00-"+want.TraceID().String()+"-"+want.SpanID().String()+"-01" {
		t.Fatalf("stored ce-traceparent %q", got)
	}
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans recorded, want only the caller's", n)
	}

	// A call with no trace context stores an event without one.
	resp, err = client.New(bus.Conn(), client.WithPrefix(bus.Prefix())).DeployJob(context.Background(),
		schemas.JobDeployRequest{Name: "untraced", Version: "2", Image: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	if got := storedTraceparent(t, bus, resp.EventID); got != "" {
		t.Fatalf("an event made without trace context has ce-traceparent %q", got)
	}
	bus.WaitFor(t, func() bool { sc, ok = events.get(resp.EventID); return ok })
	if sc.IsValid() {
		t.Fatalf("event handler's ctx has span context %v for an event with none", sc)
	}
}

// TestActionTrace: a machine action made in a span is one trace from the
// caller through the broker's API call to the plugin's action handler.
func TestActionTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	bus := plugintest.Start(t, plugintest.WithBrokerConfig(func(c *broker.Config) { c.TracerProvider = tp }))
	p, err := sdk.New(schemas.Manifest{Name: "actor", Version: "1.0.0", Description: "traced actions",
		Actions: []schemas.ActionSpec{{Command: "poke", Model: "machines"}}}, sdk.WithPrefix(bus.Prefix()), sdk.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	seenCh := make(chan trace.SpanContext, 1)
	p.HandleAction("poke", func(ctx context.Context, _ *sdk.Action) (any, error) {
		seenCh <- trace.SpanContextFromContext(ctx)
		return map[string]bool{"poked": true}, nil
	})
	bus.StartPlugin(t, p)
	ctx, root := tp.Tracer("test").Start(context.Background(), "operator pokes")
	_, err = client.New(bus.Conn(), client.WithPrefix(bus.Prefix())).MachineAction(ctx, schemas.MachineActionRequest{Machine: "m1", Command: "poke"})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	if seen := <-seenCh; seen.TraceID() != root.SpanContext().TraceID() {
		t.Fatalf("action handler's trace %v, want %v", seen.TraceID(), root.SpanContext().TraceID())
	}
	var api, action sdktrace.ReadOnlySpan
	bus.WaitFor(t, func() bool {
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "api " + schemas.APIMachinesAction:
				api = s
			case "action poke":
				action = s
			}
		}
		return api != nil && action != nil
	})
	if api.Parent().SpanID() != root.SpanContext().SpanID() || action.Parent().SpanID() != api.SpanContext().SpanID() ||
		action.SpanKind() != trace.SpanKindServer {
		t.Fatalf("action span parent %s kind %s; api span parent %s", action.Parent().SpanID(), action.SpanKind(), api.Parent().SpanID())
	}
}
