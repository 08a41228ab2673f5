package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/rpc"
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
	if err := p.checkHookHandlers(); err != nil {
		return fmt.Errorf("run plugin %s: %w", p.manifest.Name, err)
	}
	if !p.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("run plugin %s: jetstream: %w", p.manifest.Name, err)
	}
	p.warnUnhandled()

	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName(p.manifest.Name),
		Version:     p.manifest.Version,
		Description: p.manifest.Description,
		Metadata:    map[string]string{MetadataPlugin: p.manifest.Name},
		StatsHandler: func(e *micro.Endpoint) any {
			if e.Name == schemas.VerbAction {
				return p.Stats()
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("run plugin %s: add micro service: %w", p.manifest.Name, err)
	}
	p.mu.Lock()
	p.nc = nc
	p.instanceID = svc.Info().ID
	p.log = p.log.With().Str(FieldInstance, p.instanceID).Logger()
	p.base = context.WithoutCancel(ctx)
	p.mu.Unlock()
	if err := p.addEndpoints(svc); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("run plugin %s: %w", p.manifest.Name, err)
	}
	log := p.Logger()

	prevReconnect := nc.ReconnectHandler()
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prevReconnect != nil {
			prevReconnect(c)
		}
		p.Logger().Info().Msg("reconnected to NATS; registering again")
		p.requestReregister()
	})

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	shutdown := func() {
		cancel()
		wg.Wait()
		nc.SetReconnectHandler(prevReconnect)
		if err := svc.Stop(); err != nil {
			log.Warn().Err(err).Msg("cannot stop micro service")
		}
		p.hookCalls.closeAndWait() // their replies go out before the drain
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
	}
	select {
	case <-cfgSynced:
	case <-ctx.Done():
	}
	if p.manifest.Events != nil && p.State() == schemas.StateActive {
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
	subject := schemas.APISubject(p.opts.prefix, schemas.APIPluginsRegister)
	req := schemas.RegisterRequest{Manifest: p.manifest, InstanceID: p.InstanceID(), Config: p.opts.config}
	log := p.Logger()
	resp, err := backoff.Retry(ctx, func() (schemas.RegisterResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, p.opts.registerTimeout)
		defer cancel()
		var resp schemas.RegisterResponse
		err := rpc.Call(cctx, p.nc, subject, req, &resp)
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
		ev = ev.Str(FieldReason, resp.Plugin.LastError.Error())
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

// warnUnhandled logs declared actions, events and hooks that have no
// handler, and event handlers the manifest gives no way to reach.
func (p *Plugin) warnUnhandled() {
	log := p.Logger()
	for _, a := range p.manifest.Actions {
		if p.actionHandler(a.Command) == nil {
			log.Warn().Str(FieldCommand, a.Command).Msg("the manifest declares an action with no handler; calls will fail with unknown_action")
		}
	}
	p.mu.RLock()
	hasEventHandlers := !p.events.empty()
	p.mu.RUnlock()
	if p.manifest.Events == nil && hasEventHandlers {
		log.Warn().Msg("event handlers are registered but the manifest declares no events; none will be delivered")
	}
	if p.manifest.Events != nil {
		for _, t := range p.manifest.Events.Types {
			if p.eventHandler(t) == nil {
				log.Warn().Str(FieldEventType, t).Msg("the manifest subscribes to an event type with no handler; such events are acknowledged unhandled")
			}
		}
	}
	for _, h := range p.manifest.Hooks {
		if p.hookHandler(h.Hook) == nil {
			log.Warn().Str(FieldHook, h.Hook).Msg("the manifest declares a hook with no handler; its calls will fail with plugin_error")
		}
	}
}
