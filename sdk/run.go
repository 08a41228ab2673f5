package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// drainTimeout bounds the wait for the connection to finish draining.
const drainTimeout = 30 * time.Second

// Run serves the plugin on nc until ctx ends, then shuts down cleanly: it
// stops consuming (events already buffered are handled first), stops the
// micro service and drains nc — Run owns nc from here on, so give it a
// connection of its own. Run returns nil after a shutdown caused by ctx,
// and an error when startup fails: a hook handler is set for a hook point
// the manifest does not declare (the error wraps ErrInvalidManifest), the
// micro service cannot be added, or the broker refuses the registration
// for a reason retrying cannot fix (the error wraps ErrRegister and the
// broker's *schemas.Error). While no broker answers, Run keeps retrying the
// registration. A Plugin runs once.
func (p *Plugin) Run(ctx context.Context, nc *nats.Conn) error {
	if nc == nil {
		return errors.New("run plugin: nil NATS connection")
	}
	if err := p.checkHandlers(); err != nil {
		return fmt.Errorf("run plugin %s: %w", p.manifest.Name, err)
	}
	if !p.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("run plugin %s: jetstream: %w", p.manifest.Name, err)
	}

	md := map[string]string{wire.MetadataPlugin: p.manifest.Name, wire.MetadataPrefix: p.opts.prefix}
	if p.opts.host != "" {
		md[wire.MetadataHost] = p.opts.host
	}
	if p.opts.instance != "" {
		md[wire.MetadataInstance] = p.opts.instance
	}
	svc, err := wire.NewService(nc, wire.Config{
		Name:        wire.PluginService(p.manifest.Name),
		Version:     p.manifest.Version,
		Description: p.manifest.Description,
		Metadata:    md,
	})
	if err != nil {
		return fmt.Errorf("run plugin %s: start its service: %w", p.manifest.Name, err)
	}
	p.mu.Lock()
	p.nc = nc
	p.js = js
	p.instanceID = svc.ID()
	p.svc = svc
	p.log = p.log.With().Str(FieldInstance, p.instanceID).Logger()
	p.base = context.WithoutCancel(ctx)
	p.mu.Unlock()
	if err := p.addEndpoints(svc); err != nil {
		_ = svc.Stop(context.Background())
		return fmt.Errorf("run plugin %s: %w", p.manifest.Name, err)
	}
	log := p.Logger()
	if len(p.manifest.Actions) > 0 {
		if _, err := p.subscribeCancels(nc); err != nil {
			log.Warn().Err(err).Msg("cannot subscribe to cancel notices; a cancelled action's handler learns on its next progress report")
		}
	}

	prevReconnect := nc.ReconnectHandler()
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prevReconnect != nil {
			prevReconnect(c)
		}
		p.Logger().Info().Msg("reconnected to NATS; registering again")
		p.requestReregister()
		p.replay.kick() // a replay notice may have been missed
	})

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	shutdown := func() {
		cancel()
		wg.Wait()
		nc.SetReconnectHandler(prevReconnect)
		// Requests already received are answered before the drain.
		stopCtx, stopCancel := context.WithTimeout(context.Background(), drainTimeout)
		if err := svc.Stop(stopCtx); err != nil {
			log.Warn().Err(err).Msg("requests still running at shutdown; stopping anyway")
		}
		stopCancel()
		p.stopActions(log, actionStopBound)
		p.runShutdownHooks(log)
		drain(nc, log)
		log.Info().Msg("plugin stopped")
	}

	log.Info().Str(FieldVersion, p.manifest.Version).Msg("registering with the broker")
	if err := p.registerOnce(runCtx); err != nil {
		shutdown()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	cfgSynced := make(chan struct{})
	wg.Go(func() { p.watchConfig(runCtx, js, cfgSynced) })
	wg.Go(func() { p.watchRecord(runCtx, js) })
	wg.Go(func() { p.reregisterLoop(runCtx) })
	consuming := make(chan struct{})
	if p.manifest.Events != nil {
		wg.Go(func() { p.consume(runCtx, js, consuming) })
		if _, err := p.subscribeReplays(nc); err != nil {
			log.Warn().Err(err).Msg("cannot subscribe to replay notices; replays reach this instance only when it starts")
		}
		wg.Go(func() { p.replays(runCtx, js) })
	}
	select {
	case <-cfgSynced:
	case <-ctx.Done():
	}
	// Consumption starts once the stored config is applied: wait for it
	// unless the config handler rejected that config (events then wait
	// for an accepted one, and the instance is ready all the same, as a
	// plugin in ERROR is).
	if p.manifest.Events != nil && p.State() == schemas.StateActive && p.isConfigured() {
		select {
		case <-consuming:
		case <-ctx.Done():
		}
	}
	if ctx.Err() == nil {
		p.markReady()
		log.Info().Str(FieldState, string(p.State())).Msg("plugin ready")
	}
	<-ctx.Done()
	log.Info().Msg("shutting down")
	shutdown()
	return nil
}

// registerOnce registers until the broker answers, retrying with backoff
// while it cannot be reached, and records the state it reports.
func (p *Plugin) registerOnce(ctx context.Context) error {
	subject := wire.PluginAPISubject(p.opts.prefix, schemas.APIPluginsRegister, p.manifest.Name)
	req := schemas.RegisterRequest{Manifest: p.manifest, InstanceID: p.InstanceID(), Config: p.opts.config}
	log := p.Logger()
	resp, err := backoff.Retry(ctx, func() (schemas.RegisterResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, p.opts.registerTimeout)
		defer cancel()
		var resp schemas.RegisterResponse
		err := wire.Call(cctx, p.nc, subject, req, &resp)
		switch {
		case err == nil:
			return resp, nil
		case ctx.Err() != nil:
			return resp, backoff.Permanent(ctx.Err())
		case retryableRegisterError(err):
			return resp, err
		default:
			return resp, backoff.Permanent(err)
		}
	}, append(retryForever(100*time.Millisecond, 5*time.Second),
		backoff.WithNotify(func(err error, next time.Duration) {
			log.Warn().Err(err).Dur(FieldDelay, next).Msg("cannot register yet; retrying")
		}))...)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w %s: %w", ErrRegister, p.manifest.Name, err)
	}
	p.stats.registrations.Add(1)
	state := p.observeRecord(resp.Plugin)
	ev := log.Info()
	if state != schemas.StateActive {
		ev = log.Warn()
	}
	if resp.Plugin.LastError != nil {
		ev = ev.Err(resp.Plugin.LastError)
	}
	ev.Str(FieldState, string(resp.Plugin.State)).Bool("changed", resp.Changed).Msg("registered")
	return nil
}

// retryableRegisterError reports whether a failed registration may succeed
// later: nobody answers yet, the broker was slow, or it failed internally.
func retryableRegisterError(err error) bool {
	var se *schemas.Error
	if errors.As(err, &se) {
		switch se.Code {
		case schemas.CodeNoResponders, schemas.CodeTimeout, schemas.CodeInternal:
			return true
		}
		return false
	}
	return !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubject)
}

// reregisterLoop registers again whenever asked (after a reconnect, or
// when the broker marked the plugin STALE). Registration is idempotent.
func (p *Plugin) reregisterLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.reregister:
		}
		if err := p.registerOnce(ctx); err != nil && ctx.Err() == nil {
			p.Logger().Error().Err(err).Msg("registering again failed")
		}
	}
}

// drain drains nc and waits, bounded, until it is closed.
func drain(nc *nats.Conn, log *zerolog.Logger) {
	if nc.IsClosed() {
		return
	}
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if err := nc.Drain(); err != nil {
		log.Warn().Err(err).Msg("cannot drain NATS connection; closing it")
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(drainTimeout):
		log.Warn().Msg("NATS connection did not drain in time; closing it")
		nc.Close()
	}
}

// checkHandlers makes sure the handlers and the manifest agree, so a
// mistake fails Run at once instead of failing calls later: every action,
// hook point and event type the manifest declares has a handler, and every
// handler serves something the manifest declares. The error wraps
// ErrInvalidManifest and names each mismatch.
func (p *Plugin) checkHandlers() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var problems []string
	declared := map[string]bool{}
	for _, a := range p.manifest.Actions {
		declared[a.Command] = true
		if p.actions[a.Command] == nil {
			problems = append(problems, fmt.Sprintf("action %q is declared but has no handler (add p.HandleAction(%q, ...))", a.Command, a.Command))
		}
	}
	for _, c := range slices.Sorted(maps.Keys(p.actions)) {
		if !declared[c] {
			problems = append(problems, fmt.Sprintf("a handler is set for action %q, which the manifest does not declare (add it to actions)", c))
		}
	}
	hooks := map[string]bool{}
	for _, h := range p.manifest.Hooks {
		hooks[h.Hook] = true
		if p.hooks[h.Hook] == nil {
			problems = append(problems, fmt.Sprintf("hook %s is declared but has no handler", h.Hook))
		}
	}
	for _, h := range slices.Sorted(maps.Keys(p.hooks)) {
		switch {
		case schemas.HookKind(h) == "":
			problems = append(problems, fmt.Sprintf("a handler is set for %q, which is not a hook point (hook points: %s)", h, strings.Join(schemas.HookPoints, ", ")))
		case !hooks[h]:
			problems = append(problems, fmt.Sprintf("a handler is set for %s but the manifest does not declare it; add {\"hook\": %q} to the manifest's hooks", h, h))
		}
	}
	var types []string
	if p.manifest.Events != nil {
		types = p.manifest.Events.Types
	}
	for _, t := range types {
		if p.events.lookup(t) == nil {
			problems = append(problems, fmt.Sprintf("event type %s is declared in events.types but has no handler (add p.HandleEvent(%q, ...))", t, t))
		}
	}
	for _, pattern := range p.events.patterns() {
		if !slices.ContainsFunc(types, func(t string) bool { return patternMatches(pattern, t) }) {
			problems = append(problems, fmt.Sprintf("a handler is set for events %q, but events.types declares no type it matches, so none will be delivered", pattern))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the handlers do not match the manifest: %s", ErrInvalidManifest, strings.Join(problems, "; "))
}
