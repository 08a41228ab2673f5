package sdk

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// maxReasonLen bounds the reason sent with a terminated event.
const maxReasonLen = 1024

// delivery settings read from the consumer.
type deliverySettings struct {
	ackWait    time.Duration
	maxDeliver int
	backoff    []time.Duration
}

func (p *Plugin) settingsFor(info *jetstream.ConsumerInfo) deliverySettings {
	s := deliverySettings{ackWait: DefaultAckWait, maxDeliver: -1}
	if info != nil {
		if info.Config.AckWait > 0 {
			s.ackWait = info.Config.AckWait
		}
		if info.Config.MaxDeliver != 0 {
			s.maxDeliver = info.Config.MaxDeliver
		}
		s.backoff = info.Config.BackOff
	}
	if ev := p.manifest.Events; ev != nil && len(ev.Backoff) > 0 {
		s.backoff = make([]time.Duration, len(ev.Backoff))
		for i, d := range ev.Backoff {
			s.backoff[i] = d.D()
		}
	}
	if len(s.backoff) == 0 {
		s.backoff = []time.Duration{DefaultRetryDelay}
	}
	return s
}

// handlerTimeout is how long an event handler may run: the ack wait less a
// margin (a tenth, at most 2s), so that a handler that runs out of time is
// still answered for (redelivered, or on the last delivery terminated with
// its error) before the server gives up on the delivery itself.
func (s deliverySettings) handlerTimeout() time.Duration {
	return s.ackWait - min(s.ackWait/10, 2*time.Second)
}

// retryDelay is the redelivery delay after the numDelivered-th failure: the
// backoff list indexed by attempt, the last entry repeating.
func (s deliverySettings) retryDelay(numDelivered uint64) time.Duration {
	i := int(min(numDelivered, uint64(len(s.backoff)))) - 1
	return s.backoff[max(i, 0)]
}

// consume waits until the plugin is ACTIVE and its stored configuration
// has been applied by the config handler (so no event handler runs on an
// empty or previous configuration), then consumes the plugin's durable
// consumer until ctx ends, re-attaching if the consumer goes away, and
// reading its delivery settings again whenever the plugin is registered
// anew (another version may have changed them). consuming is closed the
// first time consumption starts.
func (p *Plugin) consume(ctx context.Context, js jetstream.JetStream, consuming chan<- struct{}) {
	for _, gate := range []<-chan struct{}{p.active, p.configured} {
		select {
		case <-gate:
		case <-ctx.Done():
			return
		}
	}
	stream, name := schemas.StreamEvents, schemas.ConsumerName(p.manifest.Name)
	log := p.Logger().With().Str(FieldConsumer, name).Logger()
	started := false
	for ctx.Err() == nil {
		cons, err := backoff.Retry(ctx, func() (jetstream.Consumer, error) {
			c, err := js.Consumer(ctx, stream, name)
			if err != nil {
				log.Debug().Err(err).Msg("waiting for the durable consumer")
			}
			return c, err
		}, retryForever(100*time.Millisecond, 2*time.Second)...)
		if err != nil {
			return
		}
		s := p.settingsFor(cons.CachedInfo())
		p.settings.Store(&s)
		p.setConsumer(cons)
		cc, err := cons.Consume(func(msg jetstream.Msg) { p.handleMsg(msg, *p.settings.Load(), "") },
			jetstream.PullMaxMessages(p.opts.eventBuffer),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				log.Warn().Err(err).Msg("consume error")
			}))
		if err != nil {
			log.Warn().Err(err).Msg("cannot consume; retrying")
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		log.Info().Dur("ack_wait", s.ackWait).Int("max_deliver", s.maxDeliver).Msg("consuming events")
		if !started {
			started = true
			close(consuming)
		}
	attached:
		for {
			select {
			case <-ctx.Done():
				cc.Drain()
				select {
				case <-cc.Closed():
				case <-time.After(p.settings.Load().ackWait + 5*time.Second):
					log.Warn().Msg("event handlers did not finish draining in time")
				}
				return
			case <-p.settingsChanged:
				p.refreshSettings(ctx, cons, &log)
			case <-cc.Closed():
				log.Warn().Msg("consumption stopped (consumer deleted?); attaching again")
				if !sleepCtx(ctx, 500*time.Millisecond) {
					return
				}
				break attached
			}
		}
	}
}

// refreshSettings reads the consumer's delivery settings again (ack wait,
// max deliver), so the SDK's idea of the last attempt stays the server's.
func (p *Plugin) refreshSettings(ctx context.Context, cons jetstream.Consumer, log *zerolog.Logger) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := cons.Info(cctx)
	if err != nil {
		log.Warn().Err(err).Msg("cannot read the consumer's delivery settings again; keeping the previous ones")
		return
	}
	s := p.settingsFor(info)
	if old := p.settings.Swap(&s); old == nil || old.maxDeliver != s.maxDeliver || old.ackWait != s.ackWait {
		log.Info().Dur("ack_wait", s.ackWait).Int("max_deliver", s.maxDeliver).Msg("consumer delivery settings changed")
	}
}

// requestSettingsRefresh asks the consume loop to read the consumer's
// delivery settings again; requests made while one is pending collapse
// into it.
func (p *Plugin) requestSettingsRefresh() {
	select {
	case p.settingsChanged <- struct{}{}:
	default:
	}
}

// refreshSettingsNow reads the consumer's delivery settings again at once,
// when consumption has started.
func (p *Plugin) refreshSettingsNow(ctx context.Context) {
	if cons := p.consumer(); cons != nil {
		log := p.Logger().With().Str(FieldConsumer, schemas.ConsumerName(p.manifest.Name)).Logger()
		p.refreshSettings(ctx, cons, &log)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handleMsg decodes one delivery, runs its handler and acknowledges,
// redelivers or terminates it according to the outcome; replay is the id
// of the replay it comes from ("" from the durable). The per-message
// logger is built only when there is something to log. An instance
// handles one event at a time, from either consumer.
func (p *Plugin) handleMsg(msg jetstream.Msg, s deliverySettings, replay string) {
	p.replay.handling.Lock()
	defer p.replay.handling.Unlock()
	d := Delivery{Subject: msg.Subject(), NumDelivered: 1, MaxDeliver: s.maxDeliver, Replay: replay}
	if md, err := msg.Metadata(); err == nil {
		d.StreamSeq, d.NumDelivered, d.Published = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	logFor := func(ev *event.Event) zerolog.Logger {
		c := p.Logger().With().Str(FieldConsumer, schemas.ConsumerName(p.manifest.Name)).
			Uint64(FieldStreamSeq, d.StreamSeq).Uint64(FieldDelivered, d.NumDelivered)
		if ev != nil {
			c = c.Str(FieldEventID, ev.ID()).Str(FieldEventType, ev.Type())
		}
		return c.Logger()
	}
	// An event may have waited in the pull buffer behind slow handlers:
	// when handlers are slow enough for that wait to matter, reset its ack
	// timer so the handler gets a full ack wait.
	if p.slowHandlers(s) {
		_ = msg.InProgress()
	}

	ev, err := wire.DecodeEvent(context.Background(), &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
	if err != nil {
		p.stats.eventsMalformed.Add(1)
		p.terminate(msg, logFor(nil), schemas.ReasonMalformed, err.Error())
		return
	}
	subject := msg.Subject()
	if cons, orig, ok := wire.RedeliveryOf(p.opts.prefix, subject); ok {
		// A dead letter replayed to one consumer (wire.RedeliverySubject).
		// An event type pattern can match another consumer's redelivery
		// subject too: that one is not for this plugin.
		if cons != schemas.ConsumerName(p.manifest.Name) {
			_ = msg.Ack()
			return
		}
		subject = orig
		d.DeadLetter, _ = strconv.ParseUint(msg.Headers().Get(schemas.HeaderRedeliveryOf), 10, 64)
	}
	if err := wire.CheckOrigin(p.opts.prefix, subject, ev); err != nil {
		// Only what the server checked is trusted: the subject.
		p.stats.eventsUntrusted.Add(1)
		p.terminate(msg, logFor(ev), schemas.ReasonUntrusted, err.Error())
		return
	}
	h := p.eventHandler(ev.Type())
	if h == nil {
		// Run makes sure every declared type has a handler, so the
		// consumer's filter let through a type the manifest does not
		// declare (a consumer left from another version, say): keep the
		// event in the dead-letter stream rather than drop it.
		p.stats.eventsUnhandled.Add(1)
		p.terminate(msg, logFor(ev), schemas.ReasonUnhandled,
			fmt.Sprintf("plugin %s has no handler for event type %s", p.manifest.Name, ev.Type()))
		return
	}
	// On the last delivery allowed, restart the server's ack timer: the
	// event may have waited in the pull buffer, and the handler's error
	// must reach the server (as the termination reason) before the
	// server gives up on the delivery and the error is lost.
	if d.LastAttempt() && !p.slowHandlers(s) {
		_ = msg.InProgress()
	}
	if replay != "" {
		ev.SetExtension(schemas.ExtensionReplay, replay)
	}
	if err := validateData(ev); err != nil {
		// The same bytes fail the same schema on every delivery.
		p.stats.eventsInvalid.Add(1)
		p.terminate(msg, logFor(ev), schemas.ReasonInvalidData, err.Error())
		return
	}
	// The handler's ctx carries the trace context the event does (the
	// operation that made it), so what the handler calls joins that trace.
	ctx, cancel := context.WithTimeout(wire.EventTrace(context.WithValue(p.base, deliveryKey{}, d), ev), s.handlerTimeout())
	started := time.Now()
	_, err = p.invoke(ctx, &Call{Kind: KindEvent, Name: ev.Type(), Request: *ev}, func(ctx context.Context, c *Call) (any, error) {
		return nil, h(ctx, c.Request.(event.Event))
	})
	cancel()
	p.observeHandler(time.Since(started))
	if err == nil {
		p.stats.eventsHandled.Add(1)
		if err := msg.Ack(); err != nil {
			l := logFor(ev)
			l.Warn().Err(err).Msg("cannot acknowledge event")
		}
		return
	}
	p.stats.eventsFailed.Add(1)
	log := logFor(ev)
	switch delay, retryAfter := RetryDelay(err); {
	case IsPermanent(err):
		p.terminate(msg, log, schemas.ReasonPermanent, err.Error())
	case d.LastAttempt():
		p.terminate(msg, log, schemas.ReasonRetriesExhausted, fmt.Sprintf("failed on the last of %d deliveries: %v", s.maxDeliver, err))
	case retryAfter:
		p.nak(msg, log, delay, err)
	default:
		p.nak(msg, log, s.retryDelay(d.NumDelivered), err)
	}
}

// observeHandler keeps a moving average of handler run time (in ns).
func (p *Plugin) observeHandler(d time.Duration) {
	old := p.handlerEWMA.Load()
	p.handlerEWMA.Store(old - old/8 + int64(d)/8)
}

// slowHandlers reports whether a full pull buffer of events would wait
// long enough, at the current handler speed, to eat a quarter of the ack
// wait.
func (p *Plugin) slowHandlers(s deliverySettings) bool {
	return time.Duration(p.handlerEWMA.Load())*time.Duration(p.opts.eventBuffer) > s.ackWait/4
}

func (p *Plugin) nak(msg jetstream.Msg, log zerolog.Logger, delay time.Duration, cause error) {
	log.Warn().Err(cause).Dur(FieldDelay, delay).Msg("event handler failed; event will be redelivered")
	if err := msg.NakWithDelay(delay); err != nil {
		log.Warn().Err(err).Msg("cannot nak event")
	}
}

// terminate ends the event's deliveries with a coded reason; the broker
// dead-letters it.
func (p *Plugin) terminate(msg jetstream.Msg, log zerolog.Logger, code, message string) {
	reason := schemas.TerminationReason(code, message)
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	p.stats.eventsTerminated.Add(1)
	log.Warn().Str(FieldReason, reason).Msg("terminating event; the broker dead-letters it")
	if err := msg.TermWithReason(reason); err != nil {
		log.Warn().Err(err).Msg("cannot terminate event")
	}
}

// interface guard: handlers receive the CloudEvents SDK's event type.
var _ EventHandler = func(context.Context, event.Event) error { return nil }
