package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// hookStep is the step a plugin's hook spec makes, with the defaults
// filled in.
func hookStep(rec schemas.PluginRecord, h schemas.HookSpec) schemas.HookStep {
	step := schemas.HookStep{
		Plugin:        rec.Name,
		Version:       rec.Version,
		Priority:      rec.Manifest.Priority,
		Timeout:       h.Timeout,
		FailurePolicy: h.FailurePolicy,
		Override:      h.Override,
		State:         rec.State,
		After:         h.After,
		Before:        h.Before,
	}
	if h.Priority != nil {
		step.Priority = *h.Priority
	}
	if step.Timeout <= 0 {
		step.Timeout = schemas.Duration(schemas.DefaultHookTimeout)
	}
	if step.FailurePolicy == "" {
		step.FailurePolicy = schemas.DefaultFailurePolicy(h.Hook)
	}
	step.WhenInactive = h.WhenInactive
	if step.WhenInactive == "" {
		step.WhenInactive = schemas.DefaultWhenInactive(step.FailurePolicy)
	}
	return step
}

func (b *Broker) handleHooksList(_ context.Context, req *schemas.HookListRequest) (any, error) {
	chains := b.reg.chains()
	out := schemas.HookListResponse{Chains: []schemas.HookChain{}}
	for _, hook := range schemas.HookPoints {
		if req.Hook != "" && req.Hook != hook {
			continue
		}
		steps := chains[hook]
		if steps == nil {
			steps = []schemas.HookStep{}
		}
		out.Chains = append(out.Chains, schemas.HookChain{Hook: hook, Steps: steps})
	}
	return out, nil
}

// chainResult is the outcome of one chain run.
type chainResult struct {
	// ran is false when no plugin implements the hook (nothing recorded).
	ran bool
	// payload is the input with every step's patch applied.
	payload json.RawMessage
	// env is the merged env (job.runtime_env).
	env map[string]string
	// fragments is the concatenation of the injection fragments.
	fragments string
	record    schemas.ChainRecord
	// err is set when the chain was rejected or failed.
	err *schemas.Error
}

// runChain runs the steps of hook for object, in order, each with its
// timeout and failure policy, records the run and publishes it as
// io.plugbus.hook.v1.chain_completed. env seeds job.runtime_env (its keys
// are owned by "request").
//
// The run is journalled (journal.go): each step's result is stored before
// the broker acts on it, and a chain that a broker crash cut short
// resumes, when its operation runs again, from the journal: the steps
// that had answered are not called again (their answers are replayed),
// and the rest are called with the same idempotency keys.
func (b *Broker) runChain(ctx context.Context, hook, object string, payload any, env map[string]string) (chainResult, error) {
	steps := b.reg.chains()[hook]
	jc, err := b.journalChain(ctx, hook, len(steps) > 0)
	if err != nil {
		return chainResult{}, err
	}
	var body json.RawMessage
	if jc.resumed() {
		// The chain as it ran: its steps and input, not today's.
		steps, body, env = jc.head.Steps, jc.input.Payload, jc.input.Env
	}
	if len(steps) == 0 {
		// Nothing to run, record or encode.
		return chainResult{env: env}, nil
	}
	if body == nil {
		if body, err = json.Marshal(payload); err != nil {
			return chainResult{}, fmt.Errorf("encode %s payload: %w", hook, err)
		}
	}
	ctx, span := b.tracer.Start(ctx, trace.SpanKindInternal, "hook.chain", hook)
	if span.IsRecording() {
		span.SetAttributes(wire.AttrHook.String(hook), wire.AttrObject.String(object))
	}
	start := time.Now()
	id := jc.chainID()
	if id == "" {
		id = uuid.NewString()
	}
	cs := b.newChainState(hook, object, id, body, env, start, len(steps))
	if jc.resumed() {
		cs.res.record.StartedAt, cs.res.record.Resumed = jc.head.StartedAt, true
	} else if err := jc.start(hook, object, steps, body, env, start); err != nil {
		wire.EndSpan(span, err)
		return chainResult{}, err
	}
	env0, err := newHookEnvelope(hook, id, object)
	if err != nil {
		wire.EndSpan(span, err)
		return chainResult{}, fmt.Errorf("encode %s request: %w", hook, err)
	}
	for i, step := range steps {
		if cs.stopped {
			cs.notReached(step)
			continue
		}
		out, replayed, err := jc.recorded(i)
		if err != nil {
			wire.EndSpan(span, err)
			return chainResult{}, err
		}
		if replayed {
			cs.apply(step, out)
			continue
		}
		var sspan trace.Span
		stepStart := time.Now()
		called := false
		if st := b.reg.state(step.Plugin); st != schemas.StateActive {
			out = stepEntry{Plugin: step.Plugin, Inactive: st}
		} else {
			called = true
			var sctx context.Context
			sctx, sspan = b.tracer.Start(ctx, trace.SpanKindClient, "hook.step", hook)
			if sspan.IsRecording() {
				sspan.SetAttributes(wire.AttrHook.String(hook), wire.AttrPlugin.String(step.Plugin), wire.AttrStep.Int(i),
					wire.AttrPriority.Int(step.Priority), wire.AttrFailurePolicy.String(step.FailurePolicy),
					wire.AttrMessagingSystem.String("nats"), wire.AttrMessagingDestination.String(wire.HookSubject(b.cfg.Prefix, hook, step.Plugin)))
			}
			var resp schemas.HookResponse
			req, callErr := env0.encode(i, cs.res.payload, cs.res.env)
			if callErr == nil {
				resp, callErr = b.callHook(sctx, step, hook, schemas.StepKey(id, i), req)
			}
			out = stepEntry{Plugin: step.Plugin, Error: schemas.AsError(callErr), DurationMs: ms(time.Since(stepStart))}
			if callErr == nil {
				out.Response = &resp
			}
		}
		// Journalled before the broker acts on it (another run's result,
		// when one was stored first, is the one used).
		if out, err = jc.record(ctx, i, out); err != nil {
			if sspan != nil {
				wire.EndSpan(sspan, err)
			}
			wire.EndSpan(span, err)
			return chainResult{}, err
		}
		rec, stepErr := cs.apply(step, out)
		if !called {
			continue
		}
		b.metrics.hookSteps.WithLabelValues(hook, stepResult(rec.Outcome, stepErr)).Observe(time.Since(stepStart).Seconds())
		if sspan.IsRecording() {
			sspan.SetAttributes(wire.AttrStepOutcome.String(rec.Outcome))
		}
		wire.EndSpan(sspan, stepErr)
	}
	res := cs.finish()
	jc.end(res.record)
	b.metrics.hookChains.WithLabelValues(hook, res.record.Outcome).Inc()
	var evOpts []EventOption
	if jc != nil {
		// A resumed chain publishes its event under the same id.
		evOpts = append(evOpts, WithID(eventID("chain/"+id, 0)))
	}
	if _, err := b.publishLater(ctx, schemas.TypeHookChainCompleted, res.record, append(evOpts, WithSubject(object))...); err != nil {
		b.log.Error().Err(err).Str(logging.FieldHook, hook).Msg("publish chain_completed")
	}
	if span.IsRecording() {
		span.SetAttributes(wire.AttrChainID.String(res.record.ID), wire.AttrChainOutcome.String(res.record.Outcome))
	}
	var chainErr error
	if res.record.Outcome == schemas.ChainFailed {
		chainErr = res.err
	}
	wire.EndSpan(span, chainErr)
	lvl := b.log.Debug()
	if res.err != nil {
		lvl = b.log.Info()
	}
	lvl.Str(logging.FieldHook, hook).Str(logging.FieldObject, object).Str(logging.FieldChainID, res.record.ID).Str(logging.FieldOutcome, res.record.Outcome).
		Bool("resumed", res.record.Resumed).Float64(logging.FieldDuration, res.record.DurationMs).Msg("hook chain")
	return res, nil
}

// chainState is a chain run being folded together, step by step, from
// answers live or journalled: the same answers give the same record and
// result, which is what lets a resumed chain replay the steps it had.
type chainState struct {
	b       *Broker
	hook    string
	kind    string
	res     chainResult
	owner   map[string]string
	frags   strings.Builder
	stopped bool
	start   time.Time
}

func (b *Broker) newChainState(hook, object, id string, body json.RawMessage, env map[string]string, start time.Time, steps int) *chainState {
	cs := &chainState{b: b, hook: hook, kind: schemas.HookKind(hook), owner: map[string]string{}, start: start}
	cs.res = chainResult{payload: body, ran: true}
	if cs.kind == schemas.HookKindEnv {
		cs.res.env = map[string]string{}
		for k, v := range env {
			cs.res.env[k] = v
			cs.owner[k] = "the request"
		}
	}
	cs.res.record = schemas.ChainRecord{
		ID: id, Hook: hook, Object: object, Outcome: schemas.ChainCompleted,
		StartedAt: start.UTC(), Steps: make([]schemas.StepRecord, 0, steps),
	}
	return cs
}

// notReached records a step after the one that stopped the chain.
func (cs *chainState) notReached(step schemas.HookStep) {
	cs.res.record.Steps = append(cs.res.record.Steps, schemas.StepRecord{Plugin: step.Plugin, Priority: step.Priority,
		FailurePolicy: step.FailurePolicy, Outcome: schemas.StepNotReached})
}

// apply folds one step's result into the run and returns its record and
// the step's error (nil when it answered well).
func (cs *chainState) apply(step schemas.HookStep, out stepEntry) (schemas.StepRecord, error) {
	hook := cs.hook
	rec := schemas.StepRecord{Plugin: step.Plugin, Priority: step.Priority, FailurePolicy: step.FailurePolicy,
		DurationMs: out.DurationMs, Replayed: out.replayed}
	defer func() { cs.res.record.Steps = append(cs.res.record.Steps, rec) }()
	if st := out.Inactive; st != "" {
		rec.DurationMs = 0
		if step.WhenInactive == schemas.WhenInactiveSkip {
			rec.Outcome = schemas.StepSkipped
			rec.Error = &schemas.Error{Code: schemas.CodeNotActive, Plugin: step.Plugin,
				Message: fmt.Sprintf("plugin %s is %s, not ACTIVE: skipped (when_inactive: skip)", step.Plugin, st)}
			return rec, nil
		}
		// Fail closed: a gate that is down lets nothing through.
		rec.Outcome = schemas.StepFailed
		rec.Error = &schemas.Error{Code: schemas.CodeNotActive, Plugin: step.Plugin,
			Message: fmt.Sprintf("plugin %s is %s, not ACTIVE", step.Plugin, st)}
		cs.res.record.Outcome = schemas.ChainFailed
		cs.res.err = &schemas.Error{Code: schemas.CodeNotActive, Plugin: step.Plugin,
			Message: fmt.Sprintf("hook %s: plugin %s is %s, not ACTIVE, and its step fails closed (failure policy fail): the operation is refused until it is ACTIVE again (or its manifest says when_inactive: skip)", hook, step.Plugin, st)}
		cs.stopped = true
		return rec, rec.Error
	}
	var resp schemas.HookResponse
	var callErr error
	if out.Error != nil {
		callErr = out.Error
	} else {
		if out.Response != nil {
			resp = *out.Response
		}
		callErr = cs.b.applyStep(cs.kind, step, resp, &cs.res, cs.owner, &cs.frags, &rec)
	}
	if callErr != nil {
		e := schemas.AsError(callErr)
		if e.Plugin == "" {
			e.Plugin = step.Plugin
		}
		rec.Error = e
		switch {
		case e.Code == schemas.CodeConflict && cs.kind == schemas.HookKindEnv:
			// Two plugins setting one key is a configuration error, whatever the policy.
			rec.Outcome = schemas.StepFailed
		case step.FailurePolicy == schemas.FailurePolicyIgnore:
			rec.Outcome = schemas.StepIgnored
		default:
			rec.Outcome = schemas.StepFailed
		}
		if rec.Outcome == schemas.StepFailed {
			cs.res.record.Outcome = schemas.ChainFailed
			cs.res.err = &schemas.Error{Code: e.Code, Plugin: step.Plugin, Field: e.Field,
				Message: fmt.Sprintf("hook %s: step %s failed: %s", hook, step.Plugin, e.Message)}
			cs.stopped = true
		}
	}
	if rec.Outcome == schemas.StepRejected {
		cs.res.record.Outcome = schemas.ChainRejected
		code := resp.Code
		if code == "" {
			code = schemas.CodeRejected
		}
		cs.res.err = &schemas.Error{Code: code, Plugin: step.Plugin, Message: resp.Reason}
		cs.stopped = true
	}
	return rec, callErr
}

// finish completes the run's result: fragments, duration, the error with
// the record in its details.
func (cs *chainState) finish() chainResult {
	res := cs.res
	res.fragments = cs.frags.String()
	res.record.DurationMs = ms(time.Since(cs.start))
	if res.err != nil {
		recErr := *res.err
		res.record.Error = &recErr
		res.err.Details = map[string]any{schemas.DetailChain: res.record}
	}
	return res
}

// callHook calls one step with its timeout, cut to the caller's deadline
// (less the margin the operation needs to commit), and within the limits
// of calls in flight to the hook point and to the plugin: a slow or hung
// plugin holds up only the operations that wait on it. No responder, a
// timeout, a full limit and an error reply all come back as errors.
// req is the step's request, encoded; key its idempotency key.
func (b *Broker) callHook(ctx context.Context, step schemas.HookStep, hook, key string, req []byte) (schemas.HookResponse, error) {
	var resp schemas.HookResponse
	timeout := step.Timeout.D()
	cut := false
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - 2*commitMargin; left < timeout {
			timeout, cut = max(left, 0), true
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	held, err := b.limits.acquire(cctx, hookLimit(hook), b.cfg.HookConcurrency, pluginLimit(step.Plugin), b.cfg.PluginConcurrency)
	if err != nil {
		return resp, err
	}
	defer held.release()
	// The step's idempotency key: the same in a resumed run of the chain.
	hdr := nats.Header{wire.HeaderIdempotencyKey: []string{key}}
	err = b.callStepRetrying(cctx, wire.HookSubject(b.cfg.Prefix, hook, step.Plugin), hdr, req, &resp)
	if err != nil {
		if e, ok := err.(*schemas.Error); ok && e.Code == schemas.CodeTimeout {
			e.Message = fmt.Sprintf("no answer within %s", timeout)
			if cut {
				e.Message += " (what the caller's deadline left of its " + step.Timeout.D().String() + " timeout)"
			}
		}
		return resp, err
	}
	switch resp.Outcome {
	case "", schemas.HookContinue, schemas.HookReject:
	default:
		return resp, schemas.Errorf(schemas.CodePluginError, "outcome", "answered outcome %q; want continue or reject", resp.Outcome)
	}
	return resp, nil
}

// noResponderGrace is how long a step that finds no responder is tried
// again: a plugin reconnecting after a NATS restart (the embedded server
// restarts with the broker) answers within it, while one that is really
// gone costs at most this much until the registry marks it STALE and the
// chain applies its when_inactive policy without calling it.
const noResponderGrace = 2 * time.Second

// callStepRetrying sends a step request (encoded), again with backoff
// while no one is subscribed to the subject (the request reached no
// plugin, so a repeat is safe), for noResponderGrace at most within ctx.
func (b *Broker) callStepRetrying(ctx context.Context, subject string, hdr nats.Header, req []byte, resp *schemas.HookResponse) error {
	call := func() error {
		msg, err := wire.RequestBody(ctx, b.nc, subject, hdr, req)
		if err != nil {
			return err
		}
		return decodeHookReply(msg, resp)
	}
	// The first attempt needs no retry machinery.
	last := call()
	if last == nil || !errors.Is(last, schemas.ErrNoResponders) {
		return last
	}
	gctx, cancel := context.WithTimeout(ctx, noResponderGrace)
	defer cancel()
	_, err := backoff.Retry(gctx, func() (struct{}, error) {
		last = call()
		if last != nil && !errors.Is(last, schemas.ErrNoResponders) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 20 * time.Millisecond, RandomizationFactor: 0.2,
		Multiplier: 2, MaxInterval: 250 * time.Millisecond}), backoff.WithMaxElapsedTime(0))
	if err != nil && last != nil {
		return last
	}
	return err
}

// applyStep folds a step's answer into the run, by hook kind.
func (b *Broker) applyStep(kind string, step schemas.HookStep, resp schemas.HookResponse, res *chainResult,
	owner map[string]string, frags *strings.Builder, rec *schemas.StepRecord) error {
	if resp.Outcome == schemas.HookReject {
		if kind != schemas.HookKindGate {
			return schemas.Errorf(schemas.CodePluginError, "outcome", "rejected, but this hook collects values and cannot reject")
		}
		if resp.Reason == "" {
			resp.Reason = "rejected by " + step.Plugin + " (no reason given)"
		}
		rec.Outcome = schemas.StepRejected
		rec.Reason = resp.Reason
		return nil
	}
	rec.Outcome = schemas.StepContinued
	switch kind {
	case schemas.HookKindGate:
		if len(resp.Patch) > 0 && string(resp.Patch) != "null" {
			patched, err := jsonpatch.MergePatch(res.payload, resp.Patch)
			if err != nil {
				return schemas.Errorf(schemas.CodePluginError, "patch", "answered a patch that is not a JSON merge patch: %v", err)
			}
			res.payload = patched
			rec.Outcome = schemas.StepPatched
		}
	case schemas.HookKindEnv:
		keys := make([]string, 0, len(resp.Env))
		for k := range resp.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !schemas.ValidEnvKey(k) {
				return schemas.Errorf(schemas.CodePluginError, "env."+k, "answered env var name %q: names are letters, digits and '_', not starting with a digit", k)
			}
			if prev, ok := owner[k]; ok && !step.Override {
				return &schemas.Error{Code: schemas.CodeConflict, Field: "env." + k, Plugin: step.Plugin,
					Message: fmt.Sprintf("env var %s is set by both %s and %s; declare \"override\": true on %s's job.runtime_env hook to let it win", k, prev, step.Plugin, step.Plugin)}
			}
		}
		for _, k := range keys {
			res.env[k] = resp.Env[k]
			owner[k] = step.Plugin
		}
		rec.EnvKeys = keys
	case schemas.HookKindInjection:
		if resp.Fragment != "" {
			fmt.Fprintf(frags, "# --- plugbus: %s ---\n%s", step.Plugin, resp.Fragment)
			if !strings.HasSuffix(resp.Fragment, "\n") {
				frags.WriteByte('\n')
			}
		}
	}
	return nil
}

// stepResult is the result label of a hook step: its outcome, or its
// error code (bounded to the documented ones).
func stepResult(outcome string, err error) string {
	if err != nil {
		return metricCode(schemas.AsError(err).Code)
	}
	return outcome
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
