package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// addEndpoints adds the init, config, verify and action endpoints on their
// plugin subjects, and one endpoint per declared hook point, each in the
// service's queue group.
func (p *Plugin) addEndpoints(svc *wire.Service) error {
	for _, ep := range []struct {
		verb        string
		concurrency int
		h           wire.HandlerFunc
	}{
		{schemas.VerbInit, 1, p.serveInit},
		{schemas.VerbConfig, 1, p.serveConfig},
		{schemas.VerbVerify, 1, p.serveVerify},
		{schemas.VerbAction, p.opts.actionConcurrency, p.serveAction},
	} {
		subject := wire.PluginSubject(p.opts.prefix, p.manifest.Name, ep.verb)
		if err := svc.AddEndpoint(wire.Endpoint{Name: ep.verb, Subject: subject, Concurrency: ep.concurrency, Handler: ep.h}); err != nil {
			return fmt.Errorf("add %s endpoint on %s: %w", ep.verb, subject, err)
		}
	}
	return p.addHookEndpoints(svc)
}

// handlerContext bounds a handler call by the handler timeout (and by the
// caller's deadline, which ctx carries).
func (p *Plugin) handlerContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.opts.handlerTimeout)
}

func (p *Plugin) serveInit(ctx context.Context, req *wire.Request) {
	var in schemas.InitRequest
	if err := decodeRequest(req, &in); err != nil {
		p.respond(req, schemas.VerbInit, nil, err)
		return
	}
	// The broker sends init when it (re)registers the plugin, after it
	// updated the consumer: take its delivery settings now, so this
	// instance's idea of the last delivery is right before the broker
	// reports the new registration ACTIVE.
	p.refreshSettingsNow(ctx)
	p.mu.RLock()
	h := p.onInit
	p.mu.RUnlock()
	hctx, cancel := p.handlerContext(ctx)
	md, err := p.invoke(hctx, &Call{Kind: KindInit, Name: schemas.VerbInit, Request: in}, func(ctx context.Context, c *Call) (any, error) {
		if h == nil {
			return map[string]any(nil), nil
		}
		return h(ctx, c.Request.(schemas.InitRequest))
	})
	cancel()
	meta, _ := md.(map[string]any)
	p.respond(req, schemas.VerbInit, schemas.InitResponse{Metadata: meta}, p.pluginError(err))
}

func (p *Plugin) serveConfig(ctx context.Context, req *wire.Request) {
	var in schemas.ConfigRequest
	if err := decodeRequest(req, &in); err != nil {
		p.respond(req, schemas.VerbConfig, nil, err)
		return
	}
	hctx, cancel := p.handlerContext(ctx)
	err := p.applyConfig(hctx, in.Config, configSource{floor: p.storedConfigRevision(hctx)})
	cancel()
	p.respond(req, schemas.VerbConfig, schemas.ConfigResponse{}, p.pluginError(err))
}

// serveVerify answers {ready: false, message} when the verify handler
// fails: not being ready is an answer, not a transport failure.
func (p *Plugin) serveVerify(ctx context.Context, req *wire.Request) {
	var in schemas.VerifyRequest
	if err := decodeRequest(req, &in); err != nil {
		p.respond(req, schemas.VerbVerify, nil, err)
		return
	}
	p.mu.RLock()
	h := p.onVerify
	p.mu.RUnlock()
	resp := schemas.VerifyResponse{Ready: true}
	hctx, cancel := p.handlerContext(ctx)
	_, err := p.invoke(hctx, &Call{Kind: KindVerify, Name: schemas.VerbVerify, Request: in}, func(ctx context.Context, _ *Call) (any, error) {
		if h == nil {
			return nil, nil
		}
		return nil, h(ctx)
	})
	cancel()
	if err != nil {
		resp = schemas.VerifyResponse{Ready: false, Message: err.Error()}
		p.Logger().Warn().Err(err).Str(FieldVerb, schemas.VerbVerify).Msg("plugin is not ready")
	}
	p.respond(req, schemas.VerbVerify, resp, nil)
}

func (p *Plugin) serveAction(ctx context.Context, req *wire.Request) {
	var in schemas.ActionRequest
	if err := decodeRequest(req, &in); err != nil {
		p.stats.actionsFailed.Add(1)
		p.respond(req, schemas.VerbAction, nil, err)
		return
	}
	log := p.Logger().With().Str(FieldCommand, in.Command).Str(FieldActionID, in.ActionID).Str(FieldObject, in.Object).Logger()
	h := p.actionHandler(in.Command)
	if h == nil {
		p.stats.actionsFailed.Add(1)
		e := schemas.Errorf(schemas.CodeUnknownAction, "command", "plugin %s has no handler for command %q", p.manifest.Name, in.Command)
		e.Plugin = p.manifest.Name
		log.Warn().Msg("unknown action command")
		p.respond(req, schemas.VerbAction, nil, e)
		return
	}
	if in.Async {
		p.serveAsyncAction(ctx, req, in, h, log)
		return
	}
	// A broker that takes no progress reports: Progress does nothing.
	hctx, cancel := p.handlerContext(context.WithValue(ctx, actionRunKey{}, &actionRun{p: p, id: in.ActionID, silent: true}))
	result, err := p.invoke(hctx, &Call{Kind: KindAction, Name: in.Command, Request: &Action{ActionRequest: in}}, func(ctx context.Context, c *Call) (any, error) {
		return h(ctx, c.Request.(*Action))
	})
	cancel()
	var resp schemas.ActionResponse
	if err == nil {
		resp.Result, err = encodeResult(result)
	}
	if err != nil {
		p.stats.actionsFailed.Add(1)
		log.Warn().Err(err).Msg("action failed")
		p.respond(req, schemas.VerbAction, nil, p.pluginError(err))
		return
	}
	p.stats.actionsHandled.Add(1)
	log.Debug().Msg("action done")
	p.respond(req, schemas.VerbAction, resp, nil)
}

func (p *Plugin) respond(req *wire.Request, verb string, resp any, err error) {
	if rerr := req.Reply(resp, err); rerr != nil {
		p.Logger().Warn().Err(rerr).Str(FieldVerb, verb).Msg("cannot send reply")
	}
}

// pluginError turns a handler's error into the error reply: a
// *schemas.Error keeps its code, anything else becomes plugin_error with the
// error's message. Either way the reply names the plugin.
func (p *Plugin) pluginError(err error) error {
	if err == nil {
		return nil
	}
	var se *schemas.Error
	if errors.As(err, &se) {
		c := *se
		if c.Plugin == "" {
			c.Plugin = p.manifest.Name
		}
		return &c
	}
	return &schemas.Error{Code: schemas.CodePluginError, Message: err.Error(), Plugin: p.manifest.Name}
}

func decodeRequest(req *wire.Request, v any) error {
	return decodeBody(req.Subject(), req.Data(), v)
}

func encodeResult(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, errors.New("action result is not valid JSON")
		}
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode action result: %w", err)
	}
	return b, nil
}

// safely runs f and turns a panic into an error.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return f()
}
