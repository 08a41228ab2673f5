package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/plugbus/plugbus/schemas"
)

// HookHandler answers one step of a hook chain. It returns the step's
// response — build it with [Continue], [ContinueWith], [Reject],
// [RejectWithCode], [Env] or [Fragment]; nil counts as Continue — or an
// error: a *schemas.Error keeps its code, any other error becomes
// plugin_error with the error's message, and the broker applies the hook's
// failure policy (fail stops the chain, ignore records the error and goes
// on). A rejection is an answer, not an error: return Reject(reason), nil.
//
// ctx ends a little before the hook's timeout (the manifest's hooks[].timeout,
// default 5s), so an answer made within it reaches the broker in time.
//
// Most plugins use the typed helpers instead ([Plugin.OnPreDeploy],
// [Plugin.OnRuntimeEnv], ...), which decode the payload and build the
// response for them.
type HookHandler func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error)

// HookRequest is a hook step call: the hook point, the chain run it belongs
// to, the object it is about and the payload with the changes of earlier
// steps applied. The accessors decode the payload into the type of the hook
// point.
type HookRequest struct {
	schemas.HookRequest
	// IdempotencyKey identifies this step of this chain run
	// (schemas.StepKey: the chain id and the step): the broker sends the
	// same key again when it sends the step again, after a crash cut the
	// chain short and the chain resumed. A plugin that must not do a
	// step's work twice keys it on IdempotencyKey: [HookAnswers] answers a
	// repeat with the first answer; [Plugin.Once] does a side effect once
	// across instances.
	IdempotencyKey string
}

// jobHooks are the hook points whose payload is a schemas.JobDeployRequest.
var jobHooks = []string{schemas.HookJobPreDeploy, schemas.HookJobRuntimeEnv, schemas.HookJobDockerfileInjection, schemas.HookJobBootstrapInjection}

// Job decodes the payload of job.pre_deploy, job.runtime_env,
// job.dockerfile_injection and job.bootstrap_injection: the job being
// deployed, with the changes of earlier job.pre_deploy steps applied.
func (r *HookRequest) Job() (schemas.JobDeployRequest, error) {
	var v schemas.JobDeployRequest
	return v, r.decodeFor("Job", &v, jobHooks...)
}

// DeletedJob decodes the payload of job.pre_delete: the job about to be
// deleted, as the registry holds it.
func (r *HookRequest) DeletedJob() (schemas.Job, error) {
	var v schemas.Job
	return v, r.decodeFor("DeletedJob", &v, schemas.HookJobPreDelete)
}

// Action decodes the payload of machine.pre_action: the action request,
// with Plugin set to the plugin the action is routed to.
func (r *HookRequest) Action() (schemas.MachineActionRequest, error) {
	var v schemas.MachineActionRequest
	return v, r.decodeFor("Action", &v, schemas.HookMachinePreAction)
}

// Alert decodes the payload of alert.pre_notify: the alert about to fire,
// with its id set.
func (r *HookRequest) Alert() (schemas.AlertFireRequest, error) {
	var v schemas.AlertFireRequest
	return v, r.decodeFor("Alert", &v, schemas.HookAlertPreNotify)
}

// Decode decodes the payload into v (a pointer), whatever the hook point.
// A payload that does not decode is an invalid_field error on "payload".
func (r *HookRequest) Decode(v any) error {
	if p := bytes.TrimSpace(r.Payload); len(p) == 0 || string(p) == "null" {
		return schemas.Errorf(schemas.CodeInvalidField, "payload", "the %s request has no payload", r.hookName())
	}
	if err := json.Unmarshal(r.Payload, v); err != nil {
		return schemas.Errorf(schemas.CodeInvalidField, "payload", "the %s payload cannot be read as %T: %v", r.hookName(), v, err)
	}
	return nil
}

// decodeFor decodes the payload after checking that the request is of one
// of hooks (a request without a hook, as built in a test, is not checked).
func (r *HookRequest) decodeFor(method string, v any, hooks ...string) error {
	if r.Hook != "" && !slices.Contains(hooks, r.Hook) {
		return fmt.Errorf("sdk: HookRequest.%s reads the payload of %s, not of %s; use Decode or the accessor of %s",
			method, strings.Join(hooks, ", "), r.Hook, r.Hook)
	}
	return r.Decode(v)
}

func (r *HookRequest) hookName() string {
	if r.Hook == "" {
		return "hook"
	}
	return r.Hook
}

// HandleHook sets the handler of a hook point (one of [schemas.HookPoints]).
// The manifest must declare the hook point in its hooks: Run refuses to
// start, with an error wrapping [ErrInvalidManifest], when a handler is set
// for a hook point the manifest does not declare (the broker would never
// call it). A declared hook point without a handler is logged as a warning
// by Run, and its calls are answered with a plugin_error.
//
// Hook calls are handled concurrently (see [WithHookConcurrency]): each
// chain run of the broker is about one object, and runs for different
// objects proceed in parallel. HandleHook panics when hook is empty, h is
// nil or the hook point already has a handler: those are programming
// errors.
func (p *Plugin) HandleHook(hook string, h HookHandler) {
	if hook == "" {
		panic("sdk: HandleHook: empty hook point")
	}
	if h == nil {
		panic("sdk: HandleHook: nil handler for " + hook)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.hooks[hook]; dup {
		panic("sdk: HandleHook: a handler for " + hook + " is already registered")
	}
	p.hooks[hook] = h
}

// OnPreDeploy sets the handler of job.pre_deploy, which runs before a job is
// deployed. Return [Continue] to let the deploy go on, [ContinueWith] to
// change the job (a merge patch of the JobDeployRequest, seen by the next
// steps and deployed), or [Reject] to refuse the deploy with a reason the
// caller sees.
func (p *Plugin) OnPreDeploy(h func(ctx context.Context, job schemas.JobDeployRequest) (*schemas.HookResponse, error)) {
	p.HandleHook(schemas.HookJobPreDeploy, func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error) {
		job, err := req.Job()
		if err != nil {
			return nil, err
		}
		return h(ctx, job)
	})
}

// OnRuntimeEnv sets the handler of job.runtime_env, which collects the env
// vars of a job being deployed. Return the vars to add (nil adds none). The
// broker merges every step's vars into the job's env; a key that the job or
// an earlier step already set is a conflict that fails the deploy, unless
// the manifest declares "override": true on this hook, so leave alone the
// keys already in job.Env when yours are only defaults.
func (p *Plugin) OnRuntimeEnv(h func(ctx context.Context, job schemas.JobDeployRequest) (map[string]string, error)) {
	p.HandleHook(schemas.HookJobRuntimeEnv, func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error) {
		job, err := req.Job()
		if err != nil {
			return nil, err
		}
		env, err := h(ctx, job)
		if err != nil {
			return nil, err
		}
		return Env(env), nil
	})
}

// OnDockerfileInjection sets the handler of job.dockerfile_injection, which
// collects Dockerfile lines for a job being deployed. Return the fragment
// ("" adds nothing); the broker concatenates the fragments of every step in
// chain order, each under a comment naming its plugin.
func (p *Plugin) OnDockerfileInjection(h func(ctx context.Context, job schemas.JobDeployRequest) (string, error)) {
	p.handleInjection(schemas.HookJobDockerfileInjection, h)
}

// OnBootstrapInjection sets the handler of job.bootstrap_injection, which
// collects bootstrap script lines for a job being deployed, like
// [Plugin.OnDockerfileInjection].
func (p *Plugin) OnBootstrapInjection(h func(ctx context.Context, job schemas.JobDeployRequest) (string, error)) {
	p.handleInjection(schemas.HookJobBootstrapInjection, h)
}

func (p *Plugin) handleInjection(hook string, h func(ctx context.Context, job schemas.JobDeployRequest) (string, error)) {
	p.HandleHook(hook, func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error) {
		job, err := req.Job()
		if err != nil {
			return nil, err
		}
		frag, err := h(ctx, job)
		if err != nil {
			return nil, err
		}
		return Fragment(frag), nil
	})
}

// OnPreDelete sets the handler of job.pre_delete, which runs before a job is
// deleted: return [Continue], or [Reject] to refuse the deletion.
func (p *Plugin) OnPreDelete(h func(ctx context.Context, job schemas.Job) (*schemas.HookResponse, error)) {
	p.HandleHook(schemas.HookJobPreDelete, func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error) {
		job, err := req.DeletedJob()
		if err != nil {
			return nil, err
		}
		return h(ctx, job)
	})
}

// OnPreAction sets the handler of machine.pre_action, which runs before an
// action is sent to the plugin that performs it (action.Plugin): return
// [Continue], [ContinueWith] a merge patch of the request (to change its
// params), or [Reject] to refuse the action.
func (p *Plugin) OnPreAction(h func(ctx context.Context, action schemas.MachineActionRequest) (*schemas.HookResponse, error)) {
	p.HandleHook(schemas.HookMachinePreAction, func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error) {
		action, err := req.Action()
		if err != nil {
			return nil, err
		}
		return h(ctx, action)
	})
}

// OnPreNotify sets the handler of alert.pre_notify, which runs before an
// alert fires: return [Continue], [ContinueWith] a merge patch of the alert
// (to add labels, say), or [Reject] to suppress it — the alert is then
// stored as "suppressed" and no fired event is published.
func (p *Plugin) OnPreNotify(h func(ctx context.Context, alert schemas.AlertFireRequest) (*schemas.HookResponse, error)) {
	p.HandleHook(schemas.HookAlertPreNotify, func(ctx context.Context, req *HookRequest) (*schemas.HookResponse, error) {
		alert, err := req.Alert()
		if err != nil {
			return nil, err
		}
		return h(ctx, alert)
	})
}

func (p *Plugin) hookHandler(hook string) HookHandler {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.hooks[hook]
}
