package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// replayInactive is how long a replay consumer outlives the last pull on
// it: the SDK stops pulling once the replay is done, and the server then
// deletes the consumer, even if nobody asks for the replay's status. It
// also bounds how long a replay waits for a plugin whose instances all
// stopped.
const replayInactive = 15 * time.Minute

// replayCountTries bounds the attempts at an exact count of a replay's
// events while new ones keep arriving.
const replayCountTries = 5

// A replay redelivers past events to one plugin through a second consumer
// on the event stream, ReplayConsumerName, beside the plugin's durable:
//
//   - It starts where the request says (a stream sequence or a time) and
//     covers the events up to the last one the durable had been given when
//     the replay started (UntilSeq, the durable's delivered stream
//     sequence). Later events are the durable's to deliver, once: the
//     durable is not touched, so the plugin keeps its place and new events
//     keep flowing, and no event after UntilSeq comes twice.
//   - Its filter is the plugin's (or the types asked, each within the
//     plugin's), its delivery settings the durable's.
//   - What a replay is lives in the consumer itself (its metadata), so any
//     broker replica answers for it, and the plugin's instances read it from
//     there. The SDK acknowledges without handling what the consumer
//     delivers after UntilSeq, and stops pulling once the replay is done.
//   - One replay per plugin at a time.

// replayRange is where a replay starts.
type replayRange struct {
	fromSeq  uint64
	fromTime *time.Time
}

func (rr replayRange) config(cc *jetstream.ConsumerConfig) {
	if rr.fromTime != nil {
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, rr.fromTime
		return
	}
	cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, rr.fromSeq
}

// pendingAt counts the messages matching filters from where rr starts on.
func (rr replayRange) pendingAt(ctx context.Context, s jetstream.Stream, filters []string) (uint64, error) {
	if rr.fromTime != nil {
		return pendingSince(ctx, s, filters, *rr.fromTime)
	}
	return pendingFrom(ctx, s, filters, rr.fromSeq)
}

// startReplay validates a replay request and starts the replay: it
// creates the replay consumer and tells the plugin's instances about it.
func (b *Broker) startReplay(ctx context.Context, req *schemas.PluginReplayRequest) (*schemas.ReplayStatus, error) {
	ctx, unlock, err := b.reg.lock(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := b.reg.get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	ev := rec.Manifest.Events
	if ev == nil || len(ev.Types) == 0 {
		e := schemas.Errorf(schemas.CodeInvalidField, "name", "plugin %s consumes no events (its manifest declares no events.types): there is nothing to replay to it", req.Name)
		e.Details = map[string]any{schemas.DetailPlugin: req.Name}
		return nil, e
	}
	if rec.State != schemas.StateActive {
		e := schemas.Errorf(schemas.CodeNotActive, "name", "plugin %s is %s: a replay needs an ACTIVE plugin to deliver to; start it (or fix it) and ask again", req.Name, rec.State)
		e.Plugin = req.Name
		e.Details = map[string]any{schemas.DetailPlugin: req.Name, "state": string(rec.State)}
		return nil, e
	}
	rr, err := replayStart(req)
	if err != nil {
		return nil, err
	}
	types, filters, err := replayFilters(b.cfg.Prefix, req.Name, ev.Types, req.Types)
	if err != nil {
		return nil, err
	}

	js := b.js
	durable, err := js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName(req.Name))
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			e := schemas.Errorf(schemas.CodeConflict, "name", "plugin %s has no durable consumer %s (it is made when the plugin registers): restart the plugin so it registers again", req.Name, schemas.ConsumerName(req.Name))
			e.Plugin = req.Name
			return nil, e
		}
		return nil, fmt.Errorf("read consumer %s: %w", schemas.ConsumerName(req.Name), err)
	}
	dinfo := durable.CachedInfo()
	name := schemas.ReplayConsumerName(req.Name)
	if cur, err := js.Consumer(ctx, schemas.StreamEvents, name); err == nil {
		st, err := b.replayProgress(ctx, req.Name, cur)
		if err != nil {
			return nil, err
		}
		if !st.Done {
			e := schemas.Errorf(schemas.CodeConflict, "name", "plugin %s is already replaying (replay %s: %d of %d events replayed): wait for it to finish, or cancel it", req.Name, st.ID, st.Replayed, st.Total)
			e.Plugin = req.Name
			e.Details = map[string]any{schemas.DetailPlugin: req.Name, schemas.DetailKind: "replay", "replay": st.ID,
				"replayed": st.Replayed, "total": st.Total}
			return nil, e
		}
		if err := deleteConsumer(ctx, js, name); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("read consumer %s: %w", name, err)
	}

	s := b.st.events
	sinfo, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", schemas.StreamEvents, err)
	}
	if rr.fromTime == nil && rr.fromSeq < sinfo.State.FirstSeq {
		rr.fromSeq = sinfo.State.FirstSeq
	}
	until := dinfo.Delivered.Stream
	st := &schemas.ReplayStatus{Plugin: req.Name, Types: types, FromSeq: rr.fromSeq, FromTime: rr.fromTime,
		UntilSeq: until, StartedAt: time.Now().UTC()}
	if rr.fromTime == nil && rr.fromSeq > until {
		// Nothing the plugin was given yet is that recent: what comes
		// next, its durable delivers.
		st.Done = true
		return st, nil
	}
	total, err := countReplay(ctx, s, filters, rr, until)
	if err != nil {
		return nil, fmt.Errorf("count the events to replay: %w", err)
	}
	if total == 0 {
		st.Done = true
		return st, nil
	}
	st.ID, st.Consumer, st.Total, st.Remaining = nuid.Next(), name, total, total

	dc := dinfo.Config
	cc := jetstream.ConsumerConfig{
		Durable:           name,
		Description:       fmt.Sprintf("plugbus replay %s for plugin %s", st.ID, req.Name),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           dc.AckWait,
		MaxDeliver:        dc.MaxDeliver,
		BackOff:           dc.BackOff,
		MaxAckPending:     dc.MaxAckPending,
		InactiveThreshold: replayInactive,
		Metadata: map[string]string{
			schemas.MetadataReplayID:      st.ID,
			schemas.MetadataReplayUntil:   strconv.FormatUint(until, 10),
			schemas.MetadataReplayTotal:   strconv.FormatUint(total, 10),
			schemas.MetadataReplayStarted: st.StartedAt.Format(time.RFC3339Nano),
			schemas.MetadataReplayTypes:   strings.Join(types, ","),
		},
	}
	rr.config(&cc)
	setFilters(&cc.FilterSubject, &cc.FilterSubjects, filters)
	if _, err := js.CreateConsumer(ctx, schemas.StreamEvents, cc); err != nil {
		return nil, fmt.Errorf("create replay consumer %s: %w", name, err)
	}
	// Every instance hears the notice (a plain subscription); the first
	// answer says at least one will pull.
	var ack schemas.ReplayNoticeResponse
	nctx, cancel := context.WithTimeout(ctx, b.cfg.PluginTimeout)
	err = wire.Call(nctx, b.nc, wire.PluginSubject(b.cfg.Prefix, req.Name, schemas.VerbReplay), schemas.ReplayNotice{ID: st.ID, Consumer: name}, &ack)
	cancel()
	if err != nil {
		_ = deleteConsumer(context.WithoutCancel(ctx), js, name)
		e := schemas.AsError(err)
		code := e.Code
		if code == schemas.CodeNoResponders {
			// Not the broker missing (clients retry that): the plugin.
			code = schemas.CodeNotActive
		}
		out := &schemas.Error{Code: code, Plugin: req.Name, Field: "name",
			Message: fmt.Sprintf("no instance of plugin %s took the replay (%s): instances built with an SDK older than replay support do not; rebuild the plugin with a current SDK", req.Name, e.Message),
			Details: map[string]any{schemas.DetailPlugin: req.Name}}
		return nil, out
	}
	b.log.Info().Str(logging.FieldPlugin, req.Name).Str("replay", st.ID).Uint64("total", total).Uint64("from_seq", rr.fromSeq).
		Uint64("until_seq", until).Strs("types", types).Str(logging.FieldInstance, ack.Instance).Msg("replay started")
	return st, nil
}

// replayStart checks that the request gives exactly one start.
func replayStart(req *schemas.PluginReplayRequest) (replayRange, error) {
	switch {
	case req.FromSeq == 0 && req.FromTime == nil:
		return replayRange{}, schemas.Errorf(schemas.CodeInvalidField, "from_seq", "a replay needs where to start: from_seq (a stream sequence) or from_time")
	case req.FromSeq != 0 && req.FromTime != nil:
		return replayRange{}, schemas.Errorf(schemas.CodeInvalidField, "from_time", "give from_seq or from_time, not both")
	case req.FromTime != nil && req.FromTime.After(time.Now()):
		return replayRange{}, schemas.Errorf(schemas.CodeInvalidField, "from_time", "from_time %s is in the future: a replay redelivers past events",
			req.FromTime.UTC().Format(time.RFC3339))
	}
	return replayRange{fromSeq: req.FromSeq, fromTime: req.FromTime}, nil
}

// replayFilters returns the types a replay covers and their subject
// filters: the asked types, each of which must be within one of the
// plugin's subscribed types, else the plugin's. Filters within another
// one are left out (JetStream refuses overlapping filters).
func replayFilters(prefix, plugin string, subscribed, asked []string) (types, filters []string, err error) {
	var subs []string
	for _, t := range subscribed {
		subs = append(subs, wire.EventSubject(prefix, t))
	}
	types = subscribed
	if len(asked) > 0 {
		for i, t := range asked {
			s := wire.EventSubject(prefix, t)
			if !slices.ContainsFunc(subs, func(p string) bool { return subjectWithin(s, p) }) {
				e := schemas.Errorf(schemas.CodeInvalidField, fmt.Sprintf("types[%d]", i),
					"plugin %s does not consume events of type %s: it subscribes to %s", plugin, t, strings.Join(subscribed, ", "))
				e.Details = map[string]any{schemas.DetailAllowed: subscribed}
				return nil, nil, e
			}
		}
		types = asked
	}
	var all []string
	for _, t := range types {
		all = append(all, wire.EventSubject(prefix, t))
	}
	for i, s := range all {
		covered := false
		for j, o := range all {
			if i != j && subjectWithin(s, o) && (s != o || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			filters = append(filters, s)
		}
	}
	return types, filters, nil
}

// countReplay counts the events matching filters from rr's start up to
// and including until: those pending from the start less those pending
// after until. New events land after until, so the difference holds
// while the second count stays the same around the first.
func countReplay(ctx context.Context, s jetstream.Stream, filters []string, rr replayRange, until uint64) (uint64, error) {
	var total uint64
	for range replayCountTries {
		after1, err := pendingFrom(ctx, s, filters, until+1)
		if err != nil {
			return 0, err
		}
		from, err := rr.pendingAt(ctx, s, filters)
		if err != nil {
			return 0, err
		}
		after2, err := pendingFrom(ctx, s, filters, until+1)
		if err != nil {
			return 0, err
		}
		total = from - min(from, after2)
		if after1 == after2 {
			break
		}
	}
	return total, nil
}

// replayStatus answers plugins.replay-status: the progress of the
// plugin's replay. A replay found done is finished off (its consumer
// deleted).
func (b *Broker) replayStatus(ctx context.Context, name string) (*schemas.ReplayStatus, error) {
	cons, err := b.replayConsumer(ctx, name)
	if err != nil {
		return nil, err
	}
	st, err := b.replayProgress(ctx, name, cons)
	if err != nil {
		return nil, err
	}
	if st.Done {
		if err := deleteConsumer(ctx, b.js, st.Consumer); err != nil {
			return nil, err
		}
		b.log.Info().Str(logging.FieldPlugin, name).Str("replay", st.ID).Uint64("total", st.Total).Msg("replay done")
	}
	return st, nil
}

// cancelReplay answers plugins.replay-cancel: it deletes the plugin's
// replay consumer. Events of the replay not handled yet are not
// redelivered; an event being handled finishes.
func (b *Broker) cancelReplay(ctx context.Context, name string) (*schemas.ReplayStatus, error) {
	cons, err := b.replayConsumer(ctx, name)
	if err != nil {
		return nil, err
	}
	st, err := b.replayProgress(ctx, name, cons)
	if err != nil {
		return nil, err
	}
	if err := deleteConsumer(ctx, b.js, st.Consumer); err != nil {
		return nil, err
	}
	st.Cancelled = !st.Done
	b.log.Info().Str(logging.FieldPlugin, name).Str("replay", st.ID).Uint64("replayed", st.Replayed).Uint64("total", st.Total).Msg("replay cancelled")
	return st, nil
}

// replayConsumer returns a plugin's replay consumer, or not_found.
func (b *Broker) replayConsumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	if _, err := b.reg.get(ctx, name); err != nil {
		return nil, err
	}
	cons, err := b.js.Consumer(ctx, schemas.StreamEvents, schemas.ReplayConsumerName(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		e := schemas.Errorf(schemas.CodeNotFound, "name", "plugin %s has no replay running (a finished one is gone once its status was read)", name)
		e.Details = map[string]any{schemas.DetailKind: "replay", schemas.DetailName: name, schemas.DetailPlugin: name}
		return nil, e
	}
	if err != nil {
		return nil, fmt.Errorf("read consumer %s: %w", schemas.ReplayConsumerName(name), err)
	}
	return cons, nil
}

// replayProgress reads how far a replay has got from its consumer.
//
// The replay is done once everything up to UntilSeq is acknowledged (or
// terminated): the ack floor has reached UntilSeq, or nothing is pending
// at all. Before that, what remains is the deliveries not acknowledged
// yet plus the events up to UntilSeq not delivered yet: the consumer's
// pending count less the events after UntilSeq (a probe).
func (b *Broker) replayProgress(ctx context.Context, plugin string, cons jetstream.Consumer) (*schemas.ReplayStatus, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read consumer %s: %w", cons.CachedInfo().Name, err)
	}
	md := info.Config.Metadata
	until, _ := strconv.ParseUint(md[schemas.MetadataReplayUntil], 10, 64)
	total, _ := strconv.ParseUint(md[schemas.MetadataReplayTotal], 10, 64)
	started, _ := time.Parse(time.RFC3339Nano, md[schemas.MetadataReplayStarted])
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = []string{info.Config.FilterSubject}
	}
	st := &schemas.ReplayStatus{ID: md[schemas.MetadataReplayID], Plugin: plugin, Consumer: info.Name,
		Types: strings.Split(md[schemas.MetadataReplayTypes], ","), FromSeq: info.Config.OptStartSeq, FromTime: info.Config.OptStartTime,
		UntilSeq: until, Total: total, StartedAt: started}
	if schemas.ReplayDone(info.AckFloor.Stream, until, info.NumPending, uint64(info.NumAckPending)) {
		st.Done, st.Replayed = true, total
		return st, nil
	}
	remaining := uint64(info.NumAckPending)
	if info.Delivered.Stream < until {
		after, err := pendingFrom(ctx, b.st.events, filters, until+1)
		if err != nil {
			return nil, fmt.Errorf("count the events after the replay: %w", err)
		}
		remaining += info.NumPending - min(info.NumPending, after)
	}
	// Not done: at least one remains, and no more than the total.
	remaining = min(max(remaining, 1), total)
	st.Remaining, st.Replayed = remaining, total-remaining
	return st, nil
}

// deleteConsumer deletes a consumer of the event stream; one already gone
// is fine.
func deleteConsumer(ctx context.Context, js jetstream.JetStream, name string) error {
	if err := js.DeleteConsumer(ctx, schemas.StreamEvents, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", name, err)
	}
	return nil
}
