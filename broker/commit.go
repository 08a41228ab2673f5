package broker

// This file is how an operation changes a record and publishes its events
// as one step that a crash cannot cut in half (docs/reliability.md):
//
//  1. The record is written, compare-and-set, together with the events the
//     operation publishes (its outbox, in the same KV value). That write is
//     the commit: before it nothing happened, after it everything will.
//  2. The events are published with their ids as JetStream message ids, so
//     publishing one twice stores it once (within the stream's duplicate
//     window).
//  3. The record is written again without its outbox (with the record's
//     retention TTL when it is final: a resolved alert, a deleted job).
//
// A broker that stops between 1 and 3 leaves the outbox in the record; the
// next operation on the record, and the outbox sweeper of every broker
// (which watches the buckets), publish it and clear it. Each operation has
// an id (derived from the caller's idempotency key when there is one), kept
// in the record: an operation whose id the record already carries is not
// applied again.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// recordMeta is what the broker keeps in a record next to its own fields.
// The names start with "_" so they cannot meet a record's; readers that
// decode the record into its schema type never see them.
type recordMeta struct {
	// Op is the id of the operation that wrote the record last, and
	// Events the ids of its events.
	Op     string   `json:"_op,omitempty"`
	Events []string `json:"_events,omitempty"`
	// Pending are the events of Op not yet known to be stored.
	Pending []pendingEvent `json:"_pending,omitempty"`
	// TTL is the retention of a final record, in seconds: the write that
	// clears Pending carries it.
	TTL int64 `json:"_ttl,omitempty"`
	// Purge says the record goes once its events are stored (an
	// unregistered plugin): the key is purged instead of cleared.
	Purge bool `json:"_purge,omitempty"`
	// Fence is the fencing token (buslock.go) of the last write made
	// under the object's lock: the highest lock ticket revision that
	// committed. A commit under an older ticket is refused.
	Fence uint64 `json:"_fence,omitempty"`
}

// pendingEvent is an event in a record's outbox: enough to publish it again
// exactly (same id, time, data and trace context, so an event the sweeper
// publishes belongs to the trace of the operation that made it).
type pendingEvent struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Subject     string          `json:"subject,omitempty"`
	Time        time.Time       `json:"time"`
	Data        json.RawMessage `json:"data"`
	Traceparent string          `json:"traceparent,omitempty"`
	Tracestate  string          `json:"tracestate,omitempty"`
}

func pendingOf(e *event.Event) pendingEvent {
	p := pendingEvent{ID: e.ID(), Type: e.Type(), Subject: e.Subject(), Time: e.Time(), Data: e.Data()}
	p.Traceparent, _ = e.Extensions()[wire.ExtTraceparent].(string)
	p.Tracestate, _ = e.Extensions()[wire.ExtTracestate].(string)
	return p
}

func (p pendingEvent) event() (*event.Event, error) {
	opts := []EventOption{WithID(p.ID), withTime(p.Time)}
	if p.Subject != "" {
		opts = append(opts, WithSubject(p.Subject))
	}
	if p.Traceparent != "" {
		opts = append(opts, withTrace(p.Traceparent, p.Tracestate))
	}
	return NewEvent(p.Type, p.Data, opts...)
}

// withTrace sets the distributed-tracing extension of an event.
func withTrace(traceparent, tracestate string) EventOption {
	return func(e *event.Event) {
		e.SetExtension(wire.ExtTraceparent, traceparent)
		if tracestate != "" {
			e.SetExtension(wire.ExtTracestate, tracestate)
		}
	}
}

func withTime(t time.Time) EventOption { return func(e *event.Event) { e.SetTime(t) } }

// encodeRecord writes a record's JSON object with meta's fields added.
func encodeRecord(record any, meta recordMeta) ([]byte, error) {
	body, err := marshalRecord(record)
	if err != nil {
		return nil, err
	}
	return withMeta(body, meta)
}

// marshalRecord encodes a record, which must be a JSON object.
func marshalRecord(record any) ([]byte, error) {
	body, err := json.Marshal(record)
	if err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("a record must encode as a JSON object, got %.20s", body)
	}
	return body, nil
}

// withMeta adds meta's fields to an encoded record.
func withMeta(body []byte, meta recordMeta) ([]byte, error) {
	m, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	if string(m) == "{}" {
		return body, nil
	}
	out := make([]byte, 0, len(body)+len(m))
	out = append(out, body[:len(body)-1]...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	return append(out, m[1:]...), nil
}

// opKey carries the operation id of a request in its context.
type opKey struct{}

func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// opID returns the request's operation id, or a fresh one.
func opID(ctx context.Context) string {
	if op, ok := ctx.Value(opKey{}).(string); ok && op != "" {
		return op
	}
	return nuid.Next()
}

// opOn names an operation applied to a record at revision rev (0: a new
// record). A retry that finds the record as the first attempt left it (it
// failed before its commit) gets the same event ids; one that finds the
// record carrying the operation is a replay and publishes nothing; one
// that comes after another operation changed the record (a repeat outside
// the idempotency window) is applied again, and its events must get new
// ids, or the stream would drop them as duplicates of the first ones and
// the record would hold a change no consumer hears of.
func opOn(op string, rev uint64) string { return op + "@" + strconv.FormatUint(rev, 10) }

// eventID derives the id of an operation's i-th event: the same operation
// (a retry with the same idempotency key) gets the same ids, so the stream
// stores its events once.
func eventID(op string, i int) string {
	return base62(sha256.Sum256([]byte(op + "/" + strconv.Itoa(i))))
}

// base62 renders the first 16 bytes of a hash as 22 characters of
// [0-9A-Za-z], the alphabet and length of a NATS nuid.
func base62(h [32]byte) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	n := new(big.Int).SetBytes(h[:16])
	out := make([]byte, 22)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := 21; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = digits[mod.Int64()]
	}
	return string(out)
}

// change is what an operation does to one record: it edits cur (exists
// says whether there is one) and returns the events to publish and the
// record's retention when the change makes it final (0: kept).
type change[T any] func(cur *T, exists bool) (events []*event.Event, ttl time.Duration, err error)

// commitMargin is the time an operation must have left before its commit:
// one whose caller is about to give up is not done behind its back.
const commitMargin = 250 * time.Millisecond

// publishBound bounds how long a committed operation waits for its events
// to be stored before it answers.
const publishBound = 10 * time.Second

// committed is the outcome of commitRecord.
type committed[T any] struct {
	Record T
	// EventIDs are the ids of the operation's events.
	EventIDs []string
	// Replayed is true when the record already carried the operation (a
	// retry): nothing was done again.
	Replayed bool
}

// commitRecord applies fn to the record at key and publishes its events,
// atomically (see the top of this file). A record left with an outbox by
// an earlier operation is completed first.
func commitRecord[T any](ctx context.Context, b *Broker, kv jetstream.KeyValue, key, op string, fn change[T]) (committed[T], error) {
	var out committed[T]
	for attempt := 0; ; attempt++ {
		entry, err := kv.Get(ctx, key)
		exists := err == nil
		if err != nil && !isNotFound(err) {
			return out, fmt.Errorf("read %s/%s: %w", kv.Bucket(), key, storeError(err))
		}
		var cur T
		var meta recordMeta
		var rev uint64
		var fence uint64
		if exists {
			rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), &cur); err != nil {
				return out, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
			}
			if err := json.Unmarshal(entry.Value(), &meta); err != nil {
				return out, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
			}
			if len(meta.Pending) > 0 {
				// An earlier operation's events first, in order.
				if _, err := b.flushRecord(ctx, kv, key, rev, entry.Value(), meta); err != nil && !errors.Is(err, errConflict) {
					return out, err
				}
				continue
			}
			if meta.Op == op {
				out.Record, out.EventIDs, out.Replayed = cur, meta.Events, true
				return out, nil
			}
			fence = meta.Fence
		}
		ol := lockOf(ctx)
		if ol != nil {
			if fence > ol.rev {
				// A broker that took the object's lock after this one
				// lost it has committed: this operation is stale.
				return out, lockLostError(ol.object)
			}
			fence = ol.rev
		}
		events, ttl, err := fn(&cur, exists)
		if err != nil {
			return out, err
		}
		meta = recordMeta{Op: op, TTL: int64(ttl / time.Second), Fence: fence}
		for i, e := range events {
			e.SetID(eventID(opOn(op, rev), i))
			// The trace context is kept in the outbox with the event.
			wire.SetEventTrace(ctx, e)
			if err := b.checkEventSize(ctx, e); err != nil {
				return out, err
			}
			meta.Events = append(meta.Events, e.ID())
			meta.Pending = append(meta.Pending, pendingOf(e))
		}
		if len(events) == 0 {
			meta.Pending = nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < commitMargin {
			return out, schemas.Errorf(schemas.CodeTimeout, "", "gave up before changing %s: the caller's deadline was too close (nothing was done; retry with more time)", key)
		}
		if err := ol.check(); err != nil {
			return out, err
		}
		body, cleared, err := encodeCommit(cur, meta)
		if err != nil {
			return out, fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
		}
		writeTTL := ttl
		if len(meta.Pending) > 0 {
			writeTTL = 0 // the write that clears the outbox carries it
		}
		newRev, err := b.writeKV(ctx, kv, key, body, rev, exists, writeTTL)
		if errors.Is(err, errConflict) && attempt < maxConflictRetries && ctx.Err() == nil {
			// Another writer got there first: read again, after a short
			// backoff (only a conflict backs off; any other error ends the
			// operation).
			if err := conflictBackoff(ctx, attempt); err != nil {
				return out, err
			}
			continue
		}
		if err != nil {
			return out, err
		}
		out.Record, out.EventIDs = cur, meta.Events
		if len(meta.Pending) == 0 {
			return out, nil
		}
		// Committed: from here on the operation completes whatever the
		// caller does.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishBound)
		defer cancel()
		if _, err := b.flushOutbox(pctx, kv, key, newRev, meta, events, cleared); err != nil && !errors.Is(err, errConflict) {
			return out, b.pendingError(key, op, err)
		}
		return out, nil
	}
}

// outboxEnd says how putWithEvents leaves a record once its events are
// stored.
type outboxEnd int

const (
	// outboxClear writes the record again without its outbox.
	outboxClear outboxEnd = iota
	// outboxPurge purges the key (an unregistered plugin).
	outboxPurge
	// outboxKeep leaves the record as it is: the same operation writes it
	// again next (a lifecycle's next transition), and that write replaces
	// the outbox. Until then the outbox holds events already stored; a
	// sweeper that takes it meanwhile (the broker stopped) publishes them
	// again, which the stream drops as duplicates.
	outboxKeep
)

// putWithEvents writes a record whose writer holds its lock (plugin
// records) together with its events, publishes them and ends the outbox
// as end says: commitRecord without the read, compare-and-set on the
// revision rev the caller read (0: the record must not exist yet). It
// returns the revision the record stands at afterwards (that of the write
// clearing the outbox; of the commit when the outbox is kept, there was
// nothing to clear or someone else cleared it), or errConflict.
func (b *Broker) putWithEvents(ctx context.Context, kv jetstream.KeyValue, key string, record any, rev uint64, end outboxEnd, events ...*event.Event) (uint64, error) {
	// One write of a request may be one of several (a lifecycle's
	// transitions): each gets its own id.
	op := nuid.Next()
	meta := recordMeta{Op: op, Purge: end == outboxPurge}
	ol := lockOf(ctx)
	if err := ol.check(); err != nil {
		return 0, err
	}
	if ol != nil {
		meta.Fence = ol.rev
	}
	for i, e := range events {
		e.SetID(eventID(op, i))
		wire.SetEventTrace(ctx, e)
		meta.Events = append(meta.Events, e.ID())
		meta.Pending = append(meta.Pending, pendingOf(e))
	}
	body, cleared, err := encodeCommit(record, meta)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
	}
	newRev, err := b.writeKV(ctx, kv, key, body, rev, rev != 0, 0)
	if err != nil {
		return 0, err
	}
	if len(meta.Pending) == 0 {
		return newRev, nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishBound)
	defer cancel()
	if end == outboxKeep {
		if _, err := awaitAcks(pctx, b.publishAll(pctx, events)); err != nil {
			return newRev, b.pendingError(key, op, err)
		}
		return newRev, nil
	}
	clearRev, err := b.flushOutbox(pctx, kv, key, newRev, meta, events, cleared)
	switch {
	case err != nil && !errors.Is(err, errConflict):
		return newRev, b.pendingError(key, op, err)
	case err == nil && clearRev != 0:
		// The record as it stands now: the next compare-and-set of the
		// operation is on this revision.
		return clearRev, nil
	}
	return newRev, nil
}

// pendingError is the answer of an operation that is committed but whose
// events could not be stored yet: they are in the record's outbox, and the
// sweeper publishes them once the stream takes them.
func (b *Broker) pendingError(key, op string, err error) error {
	b.log.Warn().Err(err).Str("key", key).Str("op", op).Msg("operation committed; its events are pending")
	e := schemas.Errorf(schemas.CodeUnavailable, "", "done, but its events are not stored yet (%v): they are kept with the record and published as soon as the event stream takes them; retry with the same idempotency key to learn when", err)
	e.Details = map[string]any{"op": op, "committed": true}
	return e
}

// errConflict is a compare-and-set that lost to another writer.
var errConflict = errors.New("the record changed meanwhile")

// writeKV writes a record compare-and-set (on revision rev, or creating it
// when !exists) with a TTL when ttl > 0, and returns its new revision. The
// KV API has no TTL on updates, so an update is the publish a KV update
// is, with the TTL option.
func (b *Broker) writeKV(ctx context.Context, kv jetstream.KeyValue, key string, body []byte, rev uint64, exists bool, ttl time.Duration) (uint64, error) {
	var newRev uint64
	var err error
	if exists {
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
		if ttl > 0 {
			opts = append(opts, jetstream.WithMsgTTL(ttl))
		}
		var ack *jetstream.PubAck
		ack, err = b.js.PublishMsg(ctx, &nats.Msg{Subject: "$KV." + kv.Bucket() + "." + key, Data: body}, opts...)
		if err == nil {
			newRev = ack.Sequence
		}
	} else {
		var opts []jetstream.KVCreateOpt
		if ttl > 0 {
			opts = append(opts, jetstream.KeyTTL(ttl))
		}
		newRev, err = kv.Create(ctx, key, body, opts...)
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, storeError(err))
	}
	return newRev, nil
}

// flushRecord publishes a record's outbox and clears it (compare-and-set
// on rev; errConflict when someone else changed it meanwhile, which means
// they have seen the outbox). raw is the record as stored at rev. It
// returns how many of the events the stream had not stored yet (the
// others it dropped as duplicates).
func (b *Broker) flushRecord(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64, raw []byte, meta recordMeta) (int, error) {
	events := make([]*event.Event, 0, len(meta.Pending))
	for _, p := range meta.Pending {
		e, err := p.event()
		if err != nil {
			return 0, err
		}
		events = append(events, e)
	}
	fresh, err := awaitAcks(ctx, b.publishAll(ctx, events))
	if err != nil {
		return fresh, err
	}
	if meta.Purge {
		return fresh, b.purgeAt(ctx, kv, key, rev)
	}
	var record map[string]json.RawMessage
	if err := json.Unmarshal(raw, &record); err != nil {
		return fresh, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
	}
	delete(record, "_pending")
	cleared, err := json.Marshal(record)
	if err != nil {
		return fresh, err
	}
	_, err = b.writeKV(ctx, kv, key, cleared, rev, true, time.Duration(meta.TTL)*time.Second)
	return fresh, err
}

// flushOutbox publishes events (a record's outbox, meta.Pending, as
// events) and then writes cleared (the record without its outbox) or,
// with meta.Purge, purges the key, compare-and-set on rev. It returns the
// revision of that write (0 for a purge).
func (b *Broker) flushOutbox(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64, meta recordMeta, events []*event.Event, cleared []byte) (uint64, error) {
	if _, err := awaitAcks(ctx, b.publishAll(ctx, events)); err != nil {
		return 0, err
	}
	if meta.Purge {
		return 0, b.purgeAt(ctx, kv, key, rev)
	}
	return b.writeKV(ctx, kv, key, cleared, rev, true, time.Duration(meta.TTL)*time.Second)
}

// purgeAt purges key compare-and-set on rev (errConflict when it changed).
func (b *Broker) purgeAt(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	err := kv.Purge(ctx, key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return errConflict
	}
	return err
}

// pubResult is one asynchronous publish: its ack future, or the error of
// the publish itself.
type pubResult struct {
	f   jetstream.PubAckFuture
	err error
}

// publishAll publishes events asynchronously, in order, stopping at the
// first that cannot be sent.
func (b *Broker) publishAll(ctx context.Context, events []*event.Event) []pubResult {
	out := make([]pubResult, 0, len(events))
	for _, e := range events {
		f, err := b.pub.PublishEventAsync(ctx, e)
		out = append(out, pubResult{f, err})
		if err != nil {
			break
		}
	}
	return out
}

// awaitAcks waits for the acks of publishAll's publishes and returns how
// many events the stream stored (not dropped as duplicates) and the first
// error.
func awaitAcks(ctx context.Context, rs []pubResult) (int, error) {
	fresh := 0
	var first error
	for _, r := range rs {
		if r.err != nil {
			if first == nil {
				first = r.err
			}
			continue
		}
		select {
		case ack := <-r.f.Ok():
			if !ack.Duplicate {
				fresh++
			}
		case err := <-r.f.Err():
			if first == nil {
				first = fmt.Errorf("publish event: %w", err)
			}
		case <-ctx.Done():
			return fresh, ctx.Err()
		}
	}
	return fresh, first
}

// encodeCommit encodes a record with meta, and the same record once its
// outbox is published (meta without Pending).
func encodeCommit(record any, meta recordMeta) (body, cleared []byte, err error) {
	rec, err := marshalRecord(record)
	if err != nil {
		return nil, nil, err
	}
	if body, err = withMeta(rec, meta); err != nil || len(meta.Pending) == 0 {
		return body, body, err
	}
	done := meta
	done.Pending = nil
	cleared, err = withMeta(rec, done)
	return body, cleared, err
}

// checkEventSize refuses an event the stream would not store, before
// anything is written.
func (b *Broker) checkEventSize(ctx context.Context, e *event.Event) error {
	// A bound first: percent-encoding at most triples an attribute's
	// value. Only an event the bound puts near the limit is encoded to be
	// measured (and encoded again when published).
	subject := wire.EventSubject(b.cfg.Prefix, e.Type())
	bound := len(e.Data()) + len(subject) + 256
	for _, v := range []string{e.ID(), e.Source(), e.Type(), e.Subject(), e.DataSchema(), e.DataContentType()} {
		bound += 3*len(v) + 32
	}
	for k, v := range e.Extensions() {
		bound += len(k) + 3*len(fmt.Sprint(v)) + 32
	}
	if bound <= b.cfg.MaxRequestBytes {
		return nil
	}
	msg, err := wire.EncodeEvent(ctx, subject, e)
	if err != nil {
		return err
	}
	size := len(msg.Data) + len(msg.Subject)
	for k, vs := range msg.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if size > b.cfg.MaxRequestBytes {
		e := schemas.Errorf(schemas.CodeTooLarge, "", "its %s event would be %d bytes, over the limit of %d: send less data (nothing was stored)", e.Type(), size, b.cfg.MaxRequestBytes)
		return e
	}
	return nil
}

// outboxSweeper completes the outboxes that operations left behind (a
// broker that stopped between commit and publish): it watches the buckets
// whose records carry outboxes (the plugins bucket through the registry's
// watch) and flushes any outbox older than sweepGrace. At start, the
// watch's first values are every record, so what a crash left is
// published at once.
type outboxSweeper struct {
	b       *Broker
	mu      sync.Mutex
	pending map[string]sweepItem
}

type sweepItem struct {
	kv    jetstream.KeyValue
	key   string
	since time.Time
}

// outboxKey is how recordMeta.Pending's key appears in a record.
var outboxKey = []byte(`"_pending"`)

// sweepGrace is how old an outbox must be before the sweeper takes it: the
// operation that wrote it is normally done with it by then.
const sweepGrace = 2 * time.Second

func newOutboxSweeper(b *Broker) *outboxSweeper {
	return &outboxSweeper{b: b, pending: map[string]sweepItem{}}
}

// run watches kvs and sweeps what they (and the buckets whose entries are
// handed to observe) leave behind, until ctx ends.
func (s *outboxSweeper) run(ctx context.Context, kvs ...jetstream.KeyValue) {
	var wg sync.WaitGroup
	for _, kv := range kvs {
		wg.Go(func() { s.watch(ctx, kv) })
	}
	t := time.NewTicker(sweepGrace / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			s.sweep(ctx)
		}
	}
}

func (s *outboxSweeper) watch(ctx context.Context, kv jetstream.KeyValue) {
	watchBucket(ctx, kv, func(e jetstream.KeyValueEntry) { s.observe(kv, e) })
}

// watchBucket calls fn with every update of kv's keys until ctx ends,
// watching again (a second later when it cannot) whenever the watch ends.
func watchBucket(ctx context.Context, kv jetstream.KeyValue, fn func(jetstream.KeyValueEntry)) {
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		for e := range w.Updates() {
			if e != nil {
				fn(e)
			}
		}
		_ = w.Stop()
	}
}

// observe takes one entry of a watch of kv.
func (s *outboxSweeper) observe(kv jetstream.KeyValue, e jetstream.KeyValueEntry) {
	id := kv.Bucket() + "/" + e.Key()
	// Whether the write carries an outbox, without decoding it (sweep
	// decodes what is due; a record whose data holds the string
	// "_pending" is only read for nothing).
	has := e.Operation() == jetstream.KeyValuePut && bytes.Contains(e.Value(), outboxKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	if has {
		// The grace runs from the latest write with an outbox: a
		// lifecycle's next transition replaces the outbox of the one
		// before (outboxKeep).
		s.pending[id] = sweepItem{kv: kv, key: e.Key(), since: e.Created()}
	} else {
		delete(s.pending, id)
	}
}

// forget drops an item unless a write seen since replaced it.
func (s *outboxSweeper) forget(it sweepItem) {
	id := it.kv.Bucket() + "/" + it.key
	s.mu.Lock()
	if cur, ok := s.pending[id]; ok && cur.since.Equal(it.since) {
		delete(s.pending, id)
	}
	s.mu.Unlock()
}

func (s *outboxSweeper) sweep(ctx context.Context) {
	s.mu.Lock()
	var due []sweepItem
	for _, it := range s.pending {
		if time.Since(it.since) >= sweepGrace {
			due = append(due, it)
		}
	}
	s.mu.Unlock()
	for _, it := range due {
		fctx, cancel := context.WithTimeout(ctx, publishBound)
		e, err := it.kv.Get(fctx, it.key)
		if err == nil {
			var meta recordMeta
			switch derr := json.Unmarshal(e.Value(), &meta); {
			case derr == nil && len(meta.Pending) == 0:
				// No outbox after all (its data holds the word), or
				// cleared meanwhile: nothing to sweep unless a later
				// write brings one.
				s.forget(it)
			case derr == nil:
				var fresh int
				fresh, err = s.b.flushRecord(fctx, it.kv, it.key, e.Revision(), e.Value(), meta)
				switch {
				case err == nil && fresh == 0:
					// The operation had published them and was about to
					// write the record again (outboxKeep): only the
					// outbox was left to clear.
					s.b.log.Debug().Str("bucket", it.kv.Bucket()).Str("key", it.key).Str("op", meta.Op).Msg("cleared an outbox whose events were all stored")
				case err == nil:
					s.b.log.Info().Str("bucket", it.kv.Bucket()).Str("key", it.key).Str("op", meta.Op).Int("events", fresh).
						Msg("published the events an earlier operation left pending")
				}
			}
		}
		cancel()
		if err != nil && !errors.Is(err, errConflict) && !isNotFound(err) {
			s.b.log.Warn().Err(err).Str("bucket", it.kv.Bucket()).Str("key", it.key).Msg("pending events not published yet; retrying")
		}
	}
}
