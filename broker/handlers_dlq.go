package broker

// Dead letters for operators (admin only: the server lets no other
// identity call dlq.*): list, show, replay and purge them.
//
// A replay re-publishes the dead letter's original CloudEvent (headers and
// body as the consumer got them) into PLUGBUS_EVENTS on the consumer's own
// redelivery subject (wire.RedeliverySubject), which that consumer's
// durable filters on and no other plugin's does. So it reaches the plugin
// that gave up, once, through its usual consumer (with its delivery
// settings, its dead-letter path if it fails again), and no other plugin
// sees it. Each replay is recorded in BucketDLQReplays under the dead
// letter's (consumer, stream sequence): a second replay of it finds the
// record and says it was already replayed.
//
// The order makes a replay happen at most once even when two brokers
// replay the same dead letter at once, or one stops half-way: the
// redelivery is published with a message id derived from the dead letter
// (the stream drops a second one within its duplicate window), then the
// record is created (KV create: one writer wins; the other answers
// already_replayed). A broker that stopped between the two leaves no
// record: replaying again within the duplicate window stores nothing new
// and writes the record.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// defaultDLQPage is dlq.list's limit when the request has none.
const defaultDLQPage = 100

func (b *Broker) handleDLQList(ctx context.Context, req *schemas.DLQListRequest) (any, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = defaultDLQPage
	}
	filter := wire.DLQSubjects(b.cfg.Prefix)
	if req.Consumer != "" {
		filter = wire.DLQSubject(b.cfg.Prefix, req.Consumer)
	}
	info, err := b.st.dlq.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", schemas.StreamDLQ, err)
	}
	from := max(req.FromSeq, info.State.FirstSeq, 1)
	out := schemas.DLQListResponse{DeadLetters: []schemas.DeadLetter{}}
	if info.State.Msgs == 0 || from > info.State.LastSeq {
		return out, nil
	}
	if out.Pending, err = pendingFrom(ctx, b.st.dlq, []string{filter}, from); err != nil {
		return nil, fmt.Errorf("count the dead letters of %s: %w", schemas.StreamDLQ, err)
	}
	seq := from
	for {
		if len(out.DeadLetters) == limit {
			out.NextSeq = seq
			break
		}
		m, err := b.st.dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letter at or after %d: %w", seq, err)
		}
		seq = m.Sequence + 1
		d := deadLetterOf(m)
		if req.Code != "" && d.Code != req.Code {
			continue
		}
		if d.Replay, err = b.replayRecord(ctx, d); err != nil {
			return nil, err
		}
		out.DeadLetters = append(out.DeadLetters, d)
	}
	return out, nil
}

func (b *Broker) handleDLQGet(ctx context.Context, req *schemas.DLQRef) (any, error) {
	m, err := b.deadLetterMsg(ctx, req.Seq)
	if err != nil {
		return nil, err
	}
	d := deadLetterOf(m)
	if d.Replay, err = b.replayRecord(ctx, d); err != nil {
		return nil, err
	}
	sm := storedMessage(schemas.StreamDLQ, m)
	d.Message = &sm
	return d, nil
}

// deadLetterMsg reads one dead letter, or fails with not_found.
func (b *Broker) deadLetterMsg(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	m, err := b.st.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		e := schemas.Errorf(schemas.CodeNotFound, "seq", "%s holds no dead letter %d (purged, or older than the DLQ's max age)", schemas.StreamDLQ, seq)
		e.Details = map[string]any{schemas.DetailKind: "dead_letter", schemas.DetailName: strconv.FormatUint(seq, 10)}
		return nil, e
	}
	if err != nil {
		return nil, fmt.Errorf("get dead letter %d: %w", seq, err)
	}
	return m, nil
}

// deadLetterOf reads what a dead letter's headers say.
func deadLetterOf(m *jetstream.RawStreamMsg) schemas.DeadLetter {
	h := m.Header
	d := schemas.DeadLetter{
		Seq: m.Sequence, Time: m.Time.UTC(),
		Consumer:     h.Get(schemas.HeaderDLQConsumer),
		Stream:       h.Get(schemas.HeaderDLQStream),
		Subject:      h.Get(schemas.HeaderDLQSubject),
		Cause:        h.Get(schemas.HeaderDLQCause),
		Code:         h.Get(schemas.HeaderDLQCode),
		Reason:       h.Get(schemas.HeaderDLQReason),
		EventID:      h.Get("ce-id"),
		EventType:    h.Get("ce-type"),
		EventSource:  h.Get("ce-source"),
		EventSubject: h.Get("ce-subject"),
	}
	d.StreamSeq, _ = strconv.ParseUint(h.Get(schemas.HeaderDLQStreamSeq), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(h.Get(schemas.HeaderDLQDeliveries), 10, 64)
	if t, err := time.Parse(time.RFC3339Nano, h.Get(schemas.HeaderDLQTime)); err == nil {
		d.Time = t.UTC()
	}
	return d
}

// replayRecord returns the record of a dead letter's replay, nil when it
// was not replayed.
func (b *Broker) replayRecord(ctx context.Context, d schemas.DeadLetter) (*schemas.DLQReplay, error) {
	if d.Consumer == "" {
		return nil, nil
	}
	var r schemas.DLQReplay
	if _, err := getJSON(ctx, b.st.dlqReplays, schemas.DLQReplayKey(d.Consumer, d.StreamSeq), &r); err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read the replay of dead letter %d: %w", d.Seq, err)
	}
	return &r, nil
}

func (b *Broker) handleDLQReplay(ctx context.Context, req *schemas.DLQReplayRequest) (any, error) {
	out := schemas.DLQReplayResponse{Results: make([]schemas.DLQReplayResult, 0, len(req.Seqs))}
	for _, seq := range req.Seqs {
		res := b.replayOne(ctx, seq, req.RequestedBy)
		if res.Error != nil && res.Error.Code == schemas.CodeInternal && ctx.Err() != nil {
			// Out of time: say so for the rest rather than try each.
			return nil, schemas.Errorf(schemas.CodeTimeout, "", "replaying dead letters ran out of time at %d: %v", seq, ctx.Err())
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

// replayOne replays one dead letter (see the top of this file).
func (b *Broker) replayOne(ctx context.Context, seq uint64, requestedBy string) schemas.DLQReplayResult {
	res := schemas.DLQReplayResult{Seq: seq, Status: schemas.ReplayFailed}
	fail := func(err error) schemas.DLQReplayResult {
		res.Error = schemas.AsError(err)
		return res
	}
	m, err := b.deadLetterMsg(ctx, seq)
	if err != nil {
		return fail(err)
	}
	d := deadLetterOf(m)
	res.Consumer, res.EventID = d.Consumer, d.EventID
	if d.Consumer == "" || d.Subject == "" || d.EventID == "" {
		// The broker copies the event into the dead letter; when it had
		// left the event stream already, there is nothing to replay.
		e := schemas.Errorf(schemas.CodeConflict, "seq", "dead letter %d does not hold its event (%s): nothing to replay", seq, d.Reason)
		e.Details = map[string]any{schemas.DetailKind: "dead_letter", schemas.DetailName: strconv.FormatUint(seq, 10)}
		return fail(e)
	}
	if prev, err := b.replayRecord(ctx, d); err != nil {
		return fail(err)
	} else if prev != nil {
		res.Status, res.Replay = schemas.ReplayAlreadyReplayed, prev
		return res
	}
	subject, ok := wire.RedeliverySubject(b.cfg.Prefix, d.Consumer, d.Subject)
	if !ok {
		return fail(schemas.Errorf(schemas.CodeConflict, "seq", "dead letter %d came from subject %s, which is not an event subject of this bus", seq, d.Subject))
	}
	if err := b.ensureRedelivery(ctx, d.Consumer, subject); err != nil {
		return fail(err)
	}
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: m.Data}
	for k, vs := range m.Header {
		if k == "Nats-Msg-Id" || isDLQHeader(k) {
			continue
		}
		msg.Header[k] = append([]string(nil), vs...)
	}
	msg.Header.Set(schemas.HeaderRedeliveryOf, strconv.FormatUint(seq, 10))
	msg.Header.Set(schemas.HeaderRedeliveryStreamSeq, strconv.FormatUint(d.StreamSeq, 10))
	key := schemas.DLQReplayKey(d.Consumer, d.StreamSeq)
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID("redeliver-"+key))
	if err != nil {
		return fail(fmt.Errorf("publish the redelivery of dead letter %d: %w", seq, err))
	}
	rec := schemas.DLQReplay{DLQSeq: seq, Consumer: d.Consumer, EventID: d.EventID, ReplayedAt: time.Now().UTC(),
		ReplayedBy: schemas.ReplayedByAdmin, RequestedBy: requestedBy, Subject: subject, EventSeq: ack.Sequence}
	body, err := json.Marshal(rec)
	if err != nil {
		return fail(err)
	}
	if _, err := b.st.dlqReplays.Create(ctx, key, body); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Another replay got there first; the stream kept one
			// redelivery (same message id).
			if prev, perr := b.replayRecord(ctx, d); perr == nil && prev != nil {
				res.Status, res.Replay = schemas.ReplayAlreadyReplayed, prev
				return res
			}
		}
		return fail(fmt.Errorf("record the replay of dead letter %d: %w", seq, err))
	}
	b.log.Info().Str(logging.FieldConsumer, d.Consumer).Uint64("dlq_seq", seq).Str(logging.FieldEventID, d.EventID).
		Uint64(logging.FieldStreamSeq, ack.Sequence).Str("requested_by", requestedBy).Msg("dead letter replayed")
	res.Status, res.Replay = schemas.ReplayReplayed, &rec
	return res
}

// isDLQHeader reports whether a header is one the dead-letter path added.
func isDLQHeader(k string) bool {
	switch k {
	case schemas.HeaderDLQReason, schemas.HeaderDLQCause, schemas.HeaderDLQConsumer, schemas.HeaderDLQStream,
		schemas.HeaderDLQStreamSeq, schemas.HeaderDLQSubject, schemas.HeaderDLQDeliveries, schemas.HeaderDLQTime,
		schemas.HeaderDLQCode, schemas.HeaderRedeliveryOf, schemas.HeaderRedeliveryStreamSeq:
		return true
	}
	return false
}

// ensureRedelivery makes sure consumer exists and takes subject, one of
// its redelivery subjects: a durable made before redeliveries existed gets
// the filter added (its position and settings stay as they are).
func (b *Broker) ensureRedelivery(ctx context.Context, consumer, subject string) error {
	c, err := b.js.Consumer(ctx, schemas.StreamEvents, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		e := schemas.Errorf(schemas.CodeNotFound, "seq", "consumer %s no longer exists (its plugin was unregistered, or no longer consumes events): nothing to replay to", consumer)
		e.Details = map[string]any{schemas.DetailKind: "consumer", schemas.DetailName: consumer}
		return e
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", consumer, err)
	}
	cfg := c.CachedInfo().Config
	if filtersMatch(append([]string{cfg.FilterSubject}, cfg.FilterSubjects...), subject) {
		return nil
	}
	if cfg.FilterSubject != "" {
		cfg.FilterSubjects, cfg.FilterSubject = append([]string{cfg.FilterSubject}, cfg.FilterSubjects...), ""
	}
	withRedelivery(b.cfg.Prefix, &cfg)
	if !filtersMatch(cfg.FilterSubjects, subject) {
		return schemas.Errorf(schemas.CodeConflict, "seq", "consumer %s cannot take redeliveries: its filters %v overlap %s without matching %s",
			consumer, cfg.FilterSubjects, wire.RedeliverySubjects(b.cfg.Prefix, consumer), subject)
	}
	if _, err := b.js.UpdateConsumer(ctx, schemas.StreamEvents, cfg); err != nil {
		return fmt.Errorf("add the redelivery filter to consumer %s: %w", consumer, err)
	}
	return nil
}

func (b *Broker) handleDLQPurge(ctx context.Context, req *schemas.DLQPurgeRequest) (any, error) {
	var out schemas.DLQPurgeResponse
	switch {
	case len(req.Seqs) > 0:
		for _, seq := range req.Seqs {
			gone, err := b.deleteDeadLetter(ctx, seq)
			switch {
			case err != nil:
				return nil, err
			case gone:
				out.NotFound = append(out.NotFound, seq)
			default:
				out.Purged++
			}
		}
	case req.Consumer != "" || req.All:
		filter := wire.DLQSubjects(b.cfg.Prefix)
		var opts []jetstream.StreamPurgeOpt
		if req.Consumer != "" {
			filter = wire.DLQSubject(b.cfg.Prefix, req.Consumer)
			opts = append(opts, jetstream.WithPurgeSubject(filter))
		}
		info, err := b.st.dlq.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", schemas.StreamDLQ, err)
		}
		if info.State.Msgs > 0 {
			if out.Purged, err = pendingFrom(ctx, b.st.dlq, []string{filter}, info.State.FirstSeq); err != nil {
				return nil, fmt.Errorf("count the dead letters of %s: %w", schemas.StreamDLQ, err)
			}
		}
		if err := b.st.dlq.Purge(ctx, opts...); err != nil {
			return nil, fmt.Errorf("purge %s: %w", schemas.StreamDLQ, err)
		}
	default:
		return nil, schemas.Errorf(schemas.CodeBadRequest, "", "say which dead letters to purge: seqs, consumer or all")
	}
	b.log.Info().Uint64("purged", out.Purged).Str(logging.FieldConsumer, req.Consumer).Bool("all", req.All).Msg("dead letters purged")
	return out, nil
}

// deleteDeadLetter deletes one dead letter; notFound says it was not there.
// JetStream answers the delete of a missing message with a generic
// failure, so a failed delete is told apart by looking the message up.
func (b *Broker) deleteDeadLetter(ctx context.Context, seq uint64) (notFound bool, err error) {
	exists := func() (bool, error) {
		_, err := b.st.dlq.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	if ok, err := exists(); err != nil || !ok {
		return !ok && err == nil, err
	}
	if derr := b.st.dlq.DeleteMsg(ctx, seq); derr != nil {
		if ok, err := exists(); err == nil && !ok {
			return true, nil // deleted meanwhile
		}
		return false, fmt.Errorf("delete dead letter %d: %w", seq, derr)
	}
	return false, nil
}
