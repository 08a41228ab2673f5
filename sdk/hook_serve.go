package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// maxHookMargin bounds the part of a hook's timeout kept for the reply to
// reach the broker.
const maxHookMargin = 500 * time.Millisecond

// hookHandlerTimeout is how long a hook handler may run: the hook's timeout
// less a margin (a tenth of it, at most maxHookMargin), so an answer made
// in time reaches the broker before it gives up on the step.
func hookHandlerTimeout(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = schemas.DefaultHookTimeout
	}
	return timeout - min(timeout/10, maxHookMargin)
}

// hookEndpointName is the micro endpoint name of a hook point:
// "job.pre_deploy" -> "hook_job_pre_deploy".
func hookEndpointName(hook string) string {
	return "hook_" + strings.ReplaceAll(hook, ".", "_")
}

// addHookEndpoints adds one endpoint per hook point the manifest declares,
// on "<prefix>.hook.<hook point>.<plugin>" in the service's queue group,
// handling up to the hook concurrency at once.
func (p *Plugin) addHookEndpoints(svc *wire.Service) error {
	for _, spec := range p.manifest.Hooks {
		subject := wire.HookSubject(p.opts.prefix, spec.Hook, p.manifest.Name)
		err := svc.AddEndpoint(wire.Endpoint{
			Name: hookEndpointName(spec.Hook), Subject: subject, Concurrency: p.opts.hookConcurrency,
			Handler: func(ctx context.Context, req *wire.Request) {
				resp, err := p.serveHook(ctx, spec, req.Subject(), req.Headers().Get(wire.HeaderIdempotencyKey), req.Data())
				if rerr := req.Reply(resp, err); rerr != nil {
					p.Logger().Warn().Err(rerr).Str(FieldHook, spec.Hook).Msg("cannot send hook reply")
				}
			},
		})
		if err != nil {
			return fmt.Errorf("add hook endpoint %s on %s: %w", spec.Hook, subject, err)
		}
	}
	return nil
}

// serveHook decodes a hook call, runs its handler with the hook's deadline
// and checks the response it returns.
func (p *Plugin) serveHook(ctx context.Context, spec schemas.HookSpec, subject, key string, data []byte) (*schemas.HookResponse, error) {
	var in schemas.HookRequest
	// The logger is built only when there is something to log.
	logger := func() zerolog.Logger {
		return p.Logger().With().Str(FieldHook, spec.Hook).Str(FieldChainID, in.ChainID).Str(FieldObject, in.Object).Logger()
	}
	fail := func(err error) (*schemas.HookResponse, error) {
		p.stats.hooksFailed.Add(1)
		err = p.pluginError(err)
		l := logger()
		l.Warn().Err(err).Msg("hook step failed")
		return nil, err
	}
	if err := decodeBody(subject, data, &in); err != nil {
		return fail(err)
	}
	if in.Hook == "" {
		in.Hook = spec.Hook
	}
	if in.Hook != spec.Hook {
		return fail(schemas.Errorf(schemas.CodeBadRequest, "hook", "a %s request arrived on the %s subject %s", in.Hook, spec.Hook, subject))
	}
	h := p.hookHandler(spec.Hook)
	if h == nil {
		return fail(schemas.Errorf(schemas.CodePluginError, "hook", "plugin %s declares hook %s but has no handler for it", p.manifest.Name, spec.Hook))
	}
	limit := hookHandlerTimeout(spec.Timeout.D())
	hctx, cancel := context.WithTimeout(ctx, limit)
	out, err := p.invoke(hctx, &Call{Kind: KindHook, Name: spec.Hook, Request: &HookRequest{HookRequest: in, IdempotencyKey: key}}, func(ctx context.Context, c *Call) (any, error) {
		return h(ctx, c.Request.(*HookRequest))
	})
	resp, _ := out.(*schemas.HookResponse)
	expired := hctx.Err() != nil
	cancel()
	if err != nil {
		if expired && errors.Is(err, context.DeadlineExceeded) {
			err = schemas.Errorf(schemas.CodeTimeout, "", "hook %s: the handler did not answer within %s (the hook's timeout is %s)",
				spec.Hook, limit, limitOf(spec))
		}
		return fail(err)
	}
	if resp == nil {
		resp = Continue()
	}
	if err := checkHookResponse(spec.Hook, resp); err != nil {
		return fail(err)
	}
	p.stats.hooksHandled.Add(1)
	if resp.Outcome == schemas.HookReject {
		p.stats.hooksRejected.Add(1)
		l := logger()
		l.Info().Str(FieldReason, resp.Reason).Msg("hook step rejected")
	}
	return resp, nil
}

func limitOf(spec schemas.HookSpec) time.Duration {
	if d := spec.Timeout.D(); d > 0 {
		return d
	}
	return schemas.DefaultHookTimeout
}

// checkHookResponse refuses a response the hook point cannot take (a
// rejection from a collecting hook, env vars from a gate...) or that fails
// its schema, naming the mistake: it is the plugin's bug, so the error is
// a plugin_error.
func checkHookResponse(hook string, r *schemas.HookResponse) error {
	bad := func(field, format string, args ...any) error {
		return schemas.Errorf(schemas.CodePluginError, field, "hook %s answered %s", hook, fmt.Sprintf(format, args...))
	}
	kind := schemas.HookKind(hook)
	switch r.Outcome {
	case "", schemas.HookContinue:
	case schemas.HookReject:
		if kind != schemas.HookKindGate {
			return bad("outcome", "a rejection, but only pre-hooks (job.pre_deploy, job.pre_delete, machine.pre_action, alert.pre_notify) can reject; return an error to fail the step")
		}
	default:
		return bad("outcome", "the outcome %q; want %q or %q", r.Outcome, schemas.HookContinue, schemas.HookReject)
	}
	if len(r.Patch) > 0 && kind != schemas.HookKindGate {
		return bad("patch", "a patch, but only pre-hooks take one")
	}
	if len(r.Env) > 0 && kind != schemas.HookKindEnv {
		return bad("env", "env vars, but only %s takes them", schemas.HookJobRuntimeEnv)
	}
	if r.Fragment != "" && kind != schemas.HookKindInjection {
		return bad("fragment", "a fragment, but only %s and %s take one", schemas.HookJobDockerfileInjection, schemas.HookJobBootstrapInjection)
	}
	for k := range r.Env {
		if !schemas.ValidEnvKey(k) {
			return bad("env."+k, "the env var name %q; names are letters, digits and '_', not starting with a digit", k)
		}
	}
	return nil
}

// decodeBody decodes a request body leniently (unknown fields are allowed,
// so a newer broker can talk to an older plugin).
func decodeBody(subject string, data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return schemas.Errorf(schemas.CodeBadRequest, "", "request on %s is not a valid JSON object: %v", subject, err)
	}
	return nil
}
