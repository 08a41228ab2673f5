package sdk

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// A replay (docs/replay.md) redelivers past events to the plugin through a
// second consumer the broker creates beside the plugin's durable one,
// schemas.ReplayConsumerName. Every instance pulls from it as well as from
// the durable, and handles what it delivers like any event, one event at
// a time with the durable's: the same handlers, delivery settings,
// retries and dead letters. The events are the stored ones, with their
// original ids; the SDK marks each with the CloudEvents extension
// schemas.ExtensionReplay (see ReplayOf) and Delivery.Replay. Events the
// replay consumer delivers after the replay's last sequence are new ones,
// which the durable delivers: they are acknowledged without a handler.
// An instance stops pulling once the replay is done.

// replayBuffer bounds how many replayed events an instance pulls ahead:
// they wait their turn behind new events, which the durable keeps
// delivering meanwhile.
const replayBuffer = 64

// replayCheckInterval is how often a running replay's consumer is read to
// see whether the replay is done.
const replayCheckInterval = time.Second

// replayState is a plugin's side of replays.
type replayState struct {
	once  sync.Once
	check chan struct{} // asks the replay loop to look for a replay
	// handling serialises event handlers across the durable and the
	// replay consumer: an instance handles one event at a time.
	handling sync.Mutex
	mu       sync.Mutex
	done     string // id of the last replay this instance saw finished
}

func (r *replayState) checks() chan struct{} {
	r.once.Do(func() { r.check = make(chan struct{}, 1) })
	return r.check
}

// kick asks the replay loop to look for a replay; kicks while one is
// pending collapse into it.
func (r *replayState) kick() {
	select {
	case r.checks() <- struct{}{}:
	default:
	}
}

// ReplayOf returns the id of the replay an event handler's event comes
// from, and "" for an event delivered for the first time (or redelivered
// after a failure). The id is the CloudEvents extension
// schemas.ExtensionReplay, which the SDK sets on replayed events; the
// event's own id is the original one, so a handler can de-duplicate by it
// (see Plugin.OnceByEventID for what it does on a replay).
func ReplayOf(e event.Event) string {
	v, ok := e.Extensions()[schemas.ExtensionReplay]
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

// subscribeReplays subscribes to the broker's replay notices: every
// instance gets them (no queue group) and answers, so the broker knows at
// least one will pull.
func (p *Plugin) subscribeReplays(nc *nats.Conn) (*nats.Subscription, error) {
	return nc.Subscribe(wire.PluginSubject(p.opts.prefix, p.manifest.Name, schemas.VerbReplay), func(msg *nats.Msg) {
		var n schemas.ReplayNotice
		err := schemas.Decode(schemas.APIReplayNotice, msg.Data, &n)
		if msg.Reply != "" {
			_ = nc.PublishMsg(wire.ReplyMsg(msg.Reply, schemas.ReplayNoticeResponse{Instance: p.InstanceID()}, err))
		}
		if err != nil {
			p.Logger().Warn().Err(err).Msg("malformed replay notice ignored")
			return
		}
		p.Logger().Info().Str("replay", n.ID).Str(FieldConsumer, n.Consumer).Msg("replay requested")
		p.replay.kick()
	})
}

// replays runs the plugin's replays until ctx ends: once the plugin may
// handle events (ACTIVE, configured), it looks for a replay consumer at
// once (a replay started before this instance did), then whenever the
// broker announces one or the connection comes back.
func (p *Plugin) replays(ctx context.Context, js jetstream.JetStream) {
	for _, gate := range []<-chan struct{}{p.active, p.configured} {
		select {
		case <-gate:
		case <-ctx.Done():
			return
		}
	}
	p.replay.kick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.replay.checks():
		}
		p.runReplay(ctx, js)
	}
}

// runReplay consumes the plugin's replay consumer, when there is one and
// its replay is not done, until the replay is done, the consumer goes
// away (cancelled, or finished by the broker), another replay takes its
// place, or ctx ends.
func (p *Plugin) runReplay(ctx context.Context, js jetstream.JetStream) {
	name := schemas.ReplayConsumerName(p.manifest.Name)
	log := p.Logger().With().Str(FieldConsumer, name).Logger()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.Consumer(cctx, schemas.StreamEvents, name)
	cancel()
	if err != nil {
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
			log.Warn().Err(err).Msg("cannot read the replay consumer; looking again on the next notice")
		}
		return
	}
	info := cons.CachedInfo()
	id, until := replayOf(info)
	log = log.With().Str("replay", id).Logger()
	p.replay.mu.Lock()
	finished := p.replay.done == id
	p.replay.mu.Unlock()
	if id == "" || finished || replayDone(info, until) {
		return
	}
	s := p.settingsFor(info)
	poke := make(chan struct{}, 1)
	pokeNow := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err == nil && md.Sequence.Stream > until {
			// A new event: the durable delivers it.
			_ = msg.Ack()
			pokeNow()
			return
		}
		p.handleMsg(msg, s, id)
		if err == nil && md.Sequence.Stream >= until {
			pokeNow()
		}
	}, jetstream.PullMaxMessages(min(p.opts.eventBuffer, replayBuffer)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				log.Debug().Err(err).Msg("replay consume error")
			}
		}))
	if err != nil {
		log.Warn().Err(err).Msg("cannot consume the replay; looking again on the next notice")
		return
	}
	log.Info().Uint64("until_seq", until).Msg("replaying events")
	stop := func(why string) {
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-time.After(s.ackWait + 5*time.Second):
		}
		log.Info().Msg(why)
	}
	t := time.NewTicker(replayCheckInterval)
	defer t.Stop()
	// A notice while replaying may be for another replay that took this
	// one's place: look again once this one ends.
	again := false
	defer func() {
		if again {
			p.replay.kick()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			stop("replay paused: shutting down (another instance, or this one when it starts again, goes on)")
			return
		case <-cc.Closed():
			log.Info().Msg("replay consumer gone (replay finished or cancelled)")
			return
		case <-poke:
		case <-t.C:
		case <-p.replay.checks():
			again = true
		}
		if p.replayFinished(ctx, cons, id, until, &log) {
			stop("replay done")
			return
		}
	}
}

// replayFinished reads the replay consumer and reports whether this
// instance should stop pulling from it: the replay is done, the consumer
// is gone, or it is another replay's.
func (p *Plugin) replayFinished(ctx context.Context, cons jetstream.Consumer, id string, until uint64, log *zerolog.Logger) bool {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	info, err := cons.Info(cctx)
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrConsumerDeleted):
		return true
	case err != nil:
		if ctx.Err() == nil {
			log.Debug().Err(err).Msg("cannot read the replay consumer; trying again")
		}
		return false
	}
	if got, _ := replayOf(info); got != id {
		return true
	}
	if !replayDone(info, until) {
		return false
	}
	p.replay.mu.Lock()
	p.replay.done = id
	p.replay.mu.Unlock()
	return true
}

// replayOf reads a replay consumer's id and last sequence.
func replayOf(info *jetstream.ConsumerInfo) (id string, until uint64) {
	if info == nil {
		return "", 0
	}
	md := info.Config.Metadata
	until, _ = strconv.ParseUint(md[schemas.MetadataReplayUntil], 10, 64)
	return md[schemas.MetadataReplayID], until
}

// replayDone applies schemas.ReplayDone to a replay consumer's state.
func replayDone(info *jetstream.ConsumerInfo, until uint64) bool {
	return schemas.ReplayDone(info.AckFloor.Stream, until, info.NumPending, uint64(info.NumAckPending))
}
