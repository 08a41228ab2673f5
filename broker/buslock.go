package broker

// Object locks across brokers (docs/scale-out.md, "Per-object
// sequencing"). An operation on an object (a job, machine, alert or
// plugin) takes a ticket: a key "t.<lease>.<slot>" created in the locks
// bucket, whose value names the object. The bucket is one stream, so
// every ticket has a revision no other key shares, and revisions grow in
// the order the server stored the tickets. The ticket with the lowest
// revision among the live tickets of an object (those whose lease key
// still exists) holds the object; the others wait in revision order. This
// is etcd's lock recipe on JetStream KV:
//
//   - Every broker watches the whole bucket, so it knows every lease and
//     ticket up to the revision it has seen; once it has seen its own
//     ticket it knows every ticket created before it, and can tell
//     whether its ticket is first.
//   - Releasing is purging the ticket's key (a marker with a TTL); a
//     ticket of a lease that ended is dead, wherever it stands in the
//     queue, and whoever sees it purges it.
//   - A waiter that sees the same head for a TTL checks that head against
//     the stream leader (a marker it may have missed), so it never waits
//     on a ticket that is gone.
//   - A held lock is fenced: its ticket's revision is the fencing token.
//     Commits under it check that the lease is still trusted (lease.go)
//     and carry the token into the record (commit.go); a record written
//     under a later ticket refuses a commit under an earlier one.
//
// Ticket keys reuse a few slots per lease, so the bucket holds about as
// many keys as there are operations in flight, whatever the number of
// objects.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// lockMarkerTTL is how long the marker of a released ticket or an ended
// lease stays in the locks bucket: watchers that fall behind by less see
// the removal.
const lockMarkerTTL = time.Minute

// busLocks is this broker's view of the locks bucket and its side of the
// object locks.
type busLocks struct {
	b     *Broker
	kv    jetstream.KeyValue
	lease *lease

	slotsMu  sync.Mutex
	slotsFor string
	free     []*lockSlot
	nextSlot int

	mu       sync.Mutex
	ready    bool
	seen     uint64
	leases   map[string]bool
	tickets  map[string]*ticket
	queues   map[string][]*ticket // by object, ascending revision
	changed  chan struct{}
	cleaning map[string]bool
}

// ticket is one ticket as the watch saw it.
type ticket struct {
	key string
	rev uint64
	schemas.LockTicket
}

// lockSlot is a reusable ticket key of this broker's lease; last is the
// revision of the key's last write (its purge marker), 0 when unknown.
type lockSlot struct {
	n    int
	last uint64
}

func newBusLocks(b *Broker, kv jetstream.KeyValue, l *lease) *busLocks {
	return &busLocks{b: b, kv: kv, lease: l, leases: map[string]bool{}, tickets: map[string]*ticket{},
		queues: map[string][]*ticket{}, changed: make(chan struct{}), cleaning: map[string]bool{}}
}

func ticketKey(leaseID string, slot int) string {
	return ticketKeyPrefix + leaseID + "." + strconv.Itoa(slot)
}

// watch keeps the view in step with the bucket until ctx ends.
func (l *busLocks) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := l.kv.WatchAll(ctx)
		if err != nil {
			if l.b.nc.IsClosed() {
				return
			}
			if ctx.Err() == nil {
				l.b.log.Warn().Err(err).Msg("watch the locks bucket; retrying")
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
				continue
			}
		}
		l.reset()
		for e := range w.Updates() {
			l.apply(e)
		}
		_ = w.Stop()
	}
}

// reset forgets the view before a new watch delivers every key again.
func (l *busLocks) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ready, l.seen = false, 0
	clear(l.leases)
	clear(l.tickets)
	clear(l.queues)
	l.broadcast()
}

// broadcast wakes every waiter; l.mu is held.
func (l *busLocks) broadcast() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// apply takes one entry of the watch (nil: the initial values are in).
func (l *busLocks) apply(e jetstream.KeyValueEntry) {
	var endedLease string
	l.mu.Lock()
	if e == nil {
		l.ready = true
		l.broadcast()
		l.mu.Unlock()
		return
	}
	l.seen = max(l.seen, e.Revision())
	key, put := e.Key(), e.Operation() == jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(key, leaseKeyPrefix):
		id := key[len(leaseKeyPrefix):]
		if put {
			l.leases[id] = true
		} else {
			delete(l.leases, id)
			endedLease = id
		}
	case strings.HasPrefix(key, ticketKeyPrefix):
		l.dropTicketLocked(key)
		if put {
			t := &ticket{key: key, rev: e.Revision()}
			if json.Unmarshal(e.Value(), &t.LockTicket) == nil && t.Object != "" {
				l.tickets[key] = t
				q := l.queues[t.Object]
				i := sort.Search(len(q), func(i int) bool { return q[i].rev > t.rev })
				q = append(q, nil)
				copy(q[i+1:], q[i:])
				q[i] = t
				l.queues[t.Object] = q
			}
		}
	}
	l.broadcast()
	l.mu.Unlock()
	if endedLease != "" {
		l.lease.ended(endedLease, "its key was removed or expired")
	}
}

func (l *busLocks) dropTicketLocked(key string) {
	t := l.tickets[key]
	if t == nil {
		return
	}
	delete(l.tickets, key)
	q := l.queues[t.Object]
	for i, x := range q {
		if x == t {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(l.queues, t.Object)
	} else {
		l.queues[t.Object] = q
	}
}

// headLocked returns the ticket holding object and the dead tickets ahead
// of it; l.mu is held and the view is ready.
func (l *busLocks) headLocked(object string) (*ticket, []*ticket) {
	var dead []*ticket
	for _, t := range l.queues[object] {
		if l.leases[t.Lease] {
			return t, dead
		}
		dead = append(dead, t)
	}
	return nil, dead
}

// clean purges dead tickets (once each): they belong to leases that ended.
func (l *busLocks) clean(dead []*ticket) {
	for _, t := range dead {
		l.mu.Lock()
		busy := l.cleaning[t.key]
		l.cleaning[t.key] = true
		l.mu.Unlock()
		if busy {
			continue
		}
		go func(t *ticket) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := l.purge(ctx, t.key, t.rev)
			cancel()
			l.mu.Lock()
			delete(l.cleaning, t.key)
			l.mu.Unlock()
			if err != nil && !errors.Is(err, errConflict) {
				l.b.log.Debug().Err(err).Str("key", t.key).Msg("purge a dead ticket")
			}
		}(t)
	}
}

// purge removes a key written at rev (whatever its revision when rev is
// 0), leaving a marker that expires, and returns the marker's revision.
func (l *busLocks) purge(ctx context.Context, key string, rev uint64) (uint64, error) {
	m := nats.NewMsg("$KV." + l.kv.Bucket() + "." + key)
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	opts := []jetstream.PublishOpt{jetstream.WithMsgTTL(lockMarkerTTL)}
	if rev != 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	ack, err := l.b.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		if isWrongLastSeq(err) {
			return 0, errConflict
		}
		return 0, err
	}
	return ack.Sequence, nil
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// verify checks a head ticket against the stream leader: a removal the
// watch has not shown (or never will: a missed marker) is applied.
func (l *busLocks) verify(ctx context.Context, t *ticket) {
	ctx, cancel := context.WithTimeout(ctx, l.lease.ttl)
	defer cancel()
	stream, err := l.b.js.Stream(ctx, "KV_"+l.kv.Bucket())
	if err != nil {
		return
	}
	// gone: the key's last message is a removal (or, for rev > 0, another
	// write than rev).
	gone := func(key string, rev uint64) bool {
		m, err := stream.GetLastMsgForSubject(ctx, "$KV."+l.kv.Bucket()+"."+key)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true
		}
		if err != nil {
			return false
		}
		return m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" || rev != 0 && m.Sequence != rev
	}
	ticketGone := gone(t.key, t.rev)
	leaseGone := !ticketGone && gone(leaseKey(t.Lease), 0)
	if !ticketGone && !leaseGone {
		return
	}
	l.mu.Lock()
	if cur := l.tickets[t.key]; ticketGone && cur != nil && cur.rev == t.rev {
		l.dropTicketLocked(t.key)
	}
	if leaseGone {
		delete(l.leases, t.Lease)
	}
	l.broadcast()
	l.mu.Unlock()
	l.b.log.Debug().Str("key", t.key).Bool("ticket_gone", ticketGone).Bool("lease_gone", leaseGone).Msg("a lock's head was gone without the watch saying so")
}

// takeSlot writes a ticket for object under leaseID and returns its slot
// and revision.
func (l *busLocks) takeSlot(ctx, epoch context.Context, leaseID, object string) (*lockSlot, uint64, error) {
	body, err := json.Marshal(schemas.LockTicket{Object: object, Lease: leaseID, Broker: l.lease.info.Broker})
	if err != nil {
		return nil, 0, err
	}
	for attempt := 0; ; attempt++ {
		l.slotsMu.Lock()
		if l.slotsFor != leaseID {
			l.slotsFor, l.free, l.nextSlot = leaseID, nil, 0
		}
		var s *lockSlot
		if n := len(l.free); n > 0 {
			s, l.free = l.free[n-1], l.free[:n-1]
		} else {
			l.nextSlot++
			s = &lockSlot{n: l.nextSlot}
		}
		l.slotsMu.Unlock()
		key := ticketKey(leaseID, s.n)
		var rev uint64
		if s.last != 0 {
			rev, err = l.b.writeKV(ctx, l.kv, key, body, s.last, true, 0)
		}
		if s.last == 0 || errors.Is(err, errConflict) {
			// A fresh slot, or its marker expired: create the key.
			rev, err = l.b.writeKV(ctx, l.kv, key, body, 0, false, 0)
		}
		if err == nil {
			return s, rev, nil
		}
		if !errors.Is(err, errConflict) {
			// The write may have been stored all the same (JetStream did
			// not answer in time): a ticket nobody waits on would hold
			// the object for as long as this lease lives.
			l.dropOrphan(epoch, key)
			return nil, 0, err
		}
		if attempt >= 3 {
			return nil, 0, err
		}
		// Someone else wrote the slot's key (cleaned it as dead): leave it.
	}
}

// dropOrphan purges, in the background, a ticket key whose write failed
// without saying whether it was stored, until the purge succeeds or the
// lease ends (which kills the ticket anyway). The key is this lease's own
// and its slot is not reused, so an unconditional purge removes nothing
// else.
func (l *busLocks) dropOrphan(epoch context.Context, key string) {
	go func() {
		for attempt := 0; epoch.Err() == nil; attempt++ {
			ctx, cancel := context.WithTimeout(epoch, 2*time.Second)
			_, err := l.purge(ctx, key, 0)
			cancel()
			if err == nil {
				return
			}
			l.b.log.Debug().Err(err).Str("key", key).Msg("purge a ticket whose write was not answered; retrying")
			select {
			case <-epoch.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
			}
		}
	}()
}

// giveBack returns a released slot for reuse.
func (l *busLocks) giveBack(leaseID string, s *lockSlot) {
	l.slotsMu.Lock()
	defer l.slotsMu.Unlock()
	if l.slotsFor == leaseID {
		l.free = append(l.free, s)
	}
}

// objectLock is one held (or waited for) lock on an object.
type objectLock struct {
	l       *busLocks
	object  string
	key     string
	rev     uint64
	slot    *lockSlot
	leaseID string
	epoch   context.Context
	cancel  context.CancelCauseFunc
	stop    func() bool
	once    sync.Once
}

type lockKey struct{}

// lockOf returns the object lock a request holds, nil when none.
func lockOf(ctx context.Context) *objectLock {
	ol, _ := ctx.Value(lockKey{}).(*objectLock)
	return ol
}

// lockLostError is the answer of an operation whose lock was lost before
// it committed.
func lockLostError(object string) error {
	e := schemas.Errorf(schemas.CodeUnavailable, "", "lost the lock on %s before committing (this broker's lease on the bus ended: NATS unreachable or too slow): nothing was done; retry", object)
	e.Details = map[string]any{schemas.DetailObject: object, schemas.DetailCommitted: false}
	return e
}

// check returns an error unless the lock is still held and may commit.
func (ol *objectLock) check() error {
	if ol == nil {
		return nil
	}
	if !ol.l.lease.valid(ol.epoch) {
		return lockLostError(ol.object)
	}
	return nil
}

// checkLock is check for the lock ctx holds (nil when none).
func checkLock(ctx context.Context) error { return lockOf(ctx).check() }

// lock takes object's lock: it returns once this broker's ticket is first
// among the live ones, with a context that ends when the lock is lost
// (its cause then says so) and carries the lock for commits. The caller
// must release it.
func (l *busLocks) lock(ctx context.Context, object string) (context.Context, *objectLock, error) {
	start := time.Now()
	// Without a lease (JetStream takes no writes: a lost quorum) the
	// caller hears so at once when the last try to take one failed, and
	// within a lease TTL otherwise, not at its own deadline.
	wctx, wcancel := context.WithTimeout(ctx, l.lease.ttl)
	leaseID, epoch, err := l.lease.wait(wctx)
	wcancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx, nil, l.waitError(object, ctx.Err(), nil)
		}
		why := fmt.Sprintf("this broker has had no lease on the bus for %s", l.lease.ttl)
		if errors.Is(err, errNoLease) {
			why = err.Error()
		}
		e := schemas.Errorf(schemas.CodeUnavailable, "", "cannot lock %s: %s (JetStream does not take its writes: is the NATS cluster's quorum lost?): nothing was done; retry", object, why)
		e.Details = map[string]any{schemas.DetailObject: object, schemas.DetailCommitted: false}
		return ctx, nil, e
	}
	s, rev, err := l.takeSlot(ctx, epoch, leaseID, object)
	if err != nil {
		if ctx.Err() != nil {
			return ctx, nil, l.waitError(object, ctx.Err(), nil)
		}
		e := schemas.Errorf(schemas.CodeUnavailable, "", "cannot queue for %s in %s: %v (is JetStream available?): nothing was done; retry", object, schemas.BucketLocks, err)
		e.Details = map[string]any{schemas.DetailObject: object, schemas.DetailCommitted: false}
		return ctx, nil, e
	}
	ol := &objectLock{l: l, object: object, key: ticketKey(leaseID, s.n), rev: rev, slot: s, leaseID: leaseID, epoch: epoch}
	verify := time.NewTimer(l.lease.ttl)
	defer verify.Stop()
	var lastHead string
	for {
		l.mu.Lock()
		var head *ticket
		var dead []*ticket
		if l.ready && l.seen >= rev {
			head, dead = l.headLocked(object)
		}
		ch := l.changed
		l.mu.Unlock()
		l.clean(dead)
		if head != nil && head.key == ol.key && head.rev == rev {
			break
		}
		if head != nil && head.key != lastHead {
			lastHead = head.key
			verify.Reset(l.lease.ttl)
		}
		select {
		case <-ch:
			continue
		case <-epoch.Done():
			ol.release()
			return ctx, nil, lockLostError(object)
		case <-ctx.Done():
			ol.release()
			return ctx, nil, l.waitError(object, ctx.Err(), head)
		case <-verify.C:
			if head != nil {
				l.verify(ctx, head)
			}
			verify.Reset(l.lease.ttl)
		}
	}
	lctx, cancel := context.WithCancelCause(ctx)
	ol.cancel = cancel
	ol.stop = context.AfterFunc(epoch, func() { cancel(lockLostError(object)) })
	l.b.cluster.lockWait.Observe(time.Since(start).Seconds())
	return context.WithValue(lctx, lockKey{}, ol), ol, nil
}

// waitError is the answer of an operation that gave up waiting for an
// object's lock.
func (l *busLocks) waitError(object string, err error, head *ticket) error {
	holder := ""
	if head != nil {
		holder = " (held by broker " + head.Broker + ")"
	}
	e := schemas.Errorf(schemas.CodeTimeout, "", "gave up waiting for an earlier operation on %s%s: %v (nothing was done; retry with more time)", object, holder, err)
	e.Details = map[string]any{schemas.DetailObject: object, schemas.DetailCommitted: false}
	return e
}

// release gives the lock up (or the place in its queue): the ticket is
// purged, and retried in the background while NATS does not answer; a
// ticket whose lease ends meanwhile is dead anyway.
func (ol *objectLock) release() {
	if ol == nil {
		return
	}
	ol.once.Do(func() {
		if ol.cancel != nil {
			ol.stop()
			ol.cancel(nil)
		}
		if ol.tryRelease() {
			return
		}
		go func() {
			for attempt := 1; ol.epoch.Err() == nil; attempt++ {
				select {
				case <-ol.epoch.Done():
					return
				case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
				}
				if ol.tryRelease() {
					return
				}
			}
		}()
	})
}

// tryRelease purges the ticket once; it reports whether that is settled.
func (ol *objectLock) tryRelease() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	marker, err := ol.l.purge(ctx, ol.key, ol.rev)
	switch {
	case err == nil:
		ol.slot.last = marker
		ol.l.giveBack(ol.leaseID, ol.slot)
		return true
	case errors.Is(err, errConflict):
		// Someone purged it as dead: the lease is ending; the slot is not
		// reused.
		return true
	default:
		ol.l.b.log.Debug().Err(err).Str("object", ol.object).Str("key", ol.key).Msg("release an object lock; retrying")
		return false
	}
}

// String names the lock for logs.
func (ol *objectLock) String() string {
	return fmt.Sprintf("%s (ticket %s, revision %d)", ol.object, ol.key, ol.rev)
}

// waitReady waits until the watch has delivered the bucket's keys.
func (l *busLocks) waitReady(ctx context.Context) error {
	for {
		l.mu.Lock()
		ready, ch := l.ready, l.changed
		l.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
