package broker

// A broker's lease on the bus: the key "s.<id>" in the locks bucket
// (schemas.BucketLocks), written with a per-key TTL and renewed,
// compare-and-set on its revision, every quarter of the TTL. It is the
// JetStream KV form of a lease (etcd's, Consul's sessions):
//
//   - Taking it is a create of a key nobody else can hold (the id is a
//     fresh nuid per lease).
//   - Renewing it is an update on the revision the broker last wrote,
//     with the TTL again: it succeeds only while the key is the broker's
//     own, unexpired write.
//   - It ends when the broker deletes the key (a graceful stop) or when
//     the server expires it, one TTL after its last renewal; the server
//     then writes a marker (the bucket's LimitMarkerTTL) that every
//     watcher sees as the key's removal. A lease never comes back: a
//     broker that lost its lease takes a new one, with a new id.
//   - Everything attached to a lease (the tickets of buslock.go) dies with
//     it, without being written again.
//
// The broker trusts its lease for TTL × 4/5 after it sent the renewal that
// the server accepted (the server counts the TTL from when it stored the
// write, which is later); past that it refuses to commit anything under a
// lock until a renewal succeeds again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
)

// Prefixes of the keys of the locks bucket.
const (
	leaseKeyPrefix  = "s."
	ticketKeyPrefix = "t."
)

func leaseKey(id string) string { return leaseKeyPrefix + id }

// errLeaseLost is the cause of an ended lease's context.
var errLeaseLost = errors.New("the broker's lease on the bus ended")

// lease is this broker's lease on the bus.
type lease struct {
	b    *Broker
	kv   jetstream.KeyValue
	ttl  time.Duration
	info schemas.LockLease
	kick chan struct{}

	mu         sync.Mutex
	id         string
	rev        uint64
	validUntil time.Time
	// epoch is the current lease's context, cancelled when it ends; nil
	// while the broker holds none.
	epoch context.Context
	end   context.CancelCauseFunc
	// up is closed once a lease is held; replaced when it ends.
	up chan struct{}
	// takeErr is why the last try to take a lease failed, nil once one
	// is held: while it is set, operations are refused at once rather
	// than each waiting out a lease TTL for a bus that takes no writes.
	takeErr error
}

func newLease(b *Broker, kv jetstream.KeyValue) *lease {
	info := schemas.LockLease{Broker: brokerName(), TTLSeconds: b.cfg.LeaseTTL.Seconds()}
	info.Host, _ = os.Hostname()
	if b.cfg.NATSURL == "" {
		if abs, err := filepath.Abs(b.cfg.DataDir); err == nil {
			info.DataDir = abs
		}
	}
	return &lease{b: b, kv: kv, ttl: b.cfg.LeaseTTL, info: info, kick: make(chan struct{}, 1), up: make(chan struct{})}
}

// brokerName names this process for people reading the locks bucket.
func brokerName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// take creates a new lease.
func (l *lease) take(ctx context.Context) error {
	body, err := json.Marshal(l.info)
	if err != nil {
		return err
	}
	id := nuid.Next()
	sent := time.Now()
	rev, err := l.kv.Create(ctx, leaseKey(id), body, jetstream.KeyTTL(l.ttl))
	if err != nil {
		return fmt.Errorf("take a lease in %s: %w", schemas.BucketLocks, err)
	}
	epoch, end := context.WithCancelCause(context.Background())
	l.mu.Lock()
	l.id, l.rev, l.validUntil = id, rev, sent.Add(l.trust())
	l.epoch, l.end = epoch, end
	l.takeErr = nil
	close(l.up)
	l.mu.Unlock()
	l.b.cluster.leases.Inc()
	l.b.log.Debug().Str("lease", id).Dur("ttl", l.ttl).Msg("lease on the bus taken")
	return nil
}

// trust is how long after a renewal was sent the broker relies on it.
func (l *lease) trust() time.Duration { return l.ttl * 4 / 5 }

// current returns the lease held now: its id and its context (cancelled
// when it ends); ok is false while none is held.
func (l *lease) current() (id string, epoch context.Context, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == nil || l.epoch.Err() != nil {
		return "", nil, false
	}
	return l.id, l.epoch, true
}

// errNoLease is wait's error while the broker holds no lease and its last
// try to take one failed.
var errNoLease = errors.New("this broker has no lease on the bus")

// wait returns the lease, waiting while a new one is being taken; it
// returns errNoLease at once while the last try to take one failed.
func (l *lease) wait(ctx context.Context) (string, context.Context, error) {
	for {
		if id, epoch, ok := l.current(); ok {
			return id, epoch, nil
		}
		l.mu.Lock()
		up, takeErr := l.up, l.takeErr
		l.mu.Unlock()
		if takeErr != nil {
			return "", nil, fmt.Errorf("%w: taking one failed: %w", errNoLease, takeErr)
		}
		select {
		case <-up:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
	}
}

// valid reports whether the lease of epoch is still held and was renewed
// recently enough to be relied on.
func (l *lease) valid(epoch context.Context) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return epoch != nil && epoch == l.epoch && epoch.Err() == nil && time.Now().Before(l.validUntil)
}

// ended is told that lease id is gone (its key was removed or expired, or
// a renewal found it changed): everything held under it is lost.
func (l *lease) ended(id string, why string) {
	l.mu.Lock()
	if id != l.id || l.epoch == nil || l.epoch.Err() != nil {
		l.mu.Unlock()
		return
	}
	l.end(fmt.Errorf("%w (%s)", errLeaseLost, why))
	l.up = make(chan struct{})
	l.mu.Unlock()
	l.b.cluster.leaseLosses.Inc()
	l.b.log.Warn().Str("lease", id).Str("reason", why).
		Msg("lease on the bus lost: operations holding object locks under it are aborted, leadership (if held) passes on; taking a new lease")
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// run renews the lease until ctx ends, and takes a new one when it is
// lost.
func (l *lease) run(ctx context.Context) {
	interval := l.ttl / 4
	t := time.NewTimer(interval)
	defer t.Stop()
	failing := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.kick:
		}
		if l.b.nc.IsClosed() {
			return
		}
		id, epoch, held := l.current()
		if !held {
			tctx, cancel := context.WithTimeout(ctx, l.ttl)
			err := l.take(tctx)
			cancel()
			if err != nil {
				l.mu.Lock()
				l.takeErr = err
				l.mu.Unlock()
				failing++
				if failing == 1 || failing%20 == 0 {
					l.b.log.Warn().Err(err).Msg("cannot take a lease on the bus; retrying (meanwhile operations on jobs, machines, alerts and plugins are refused as unavailable: nothing is done)")
				}
				t.Reset(min(time.Duration(failing)*100*time.Millisecond, interval))
				continue
			}
			failing = 0
			t.Reset(interval)
			continue
		}
		l.mu.Lock()
		rev := l.rev
		l.mu.Unlock()
		body, _ := json.Marshal(l.info)
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, interval)
		newRev, err := l.b.writeKV(rctx, l.kv, leaseKey(id), body, rev, true, l.ttl)
		cancel()
		switch {
		case err == nil:
			l.mu.Lock()
			if l.epoch == epoch {
				l.rev, l.validUntil = newRev, sent.Add(l.trust())
			}
			l.mu.Unlock()
			failing = 0
			t.Reset(interval)
		case errors.Is(err, errConflict):
			l.ended(id, "its key changed or expired before the renewal")
			t.Reset(0)
		default:
			failing++
			if ctx.Err() == nil && (failing == 1 || failing%20 == 0) {
				l.b.log.Warn().Err(err).Str("lease", id).Msg("cannot renew the lease on the bus; retrying")
			}
			// Retry soon: the lease must be renewed within its TTL.
			t.Reset(min(interval, 250*time.Millisecond))
		}
	}
}

// release ends the lease at a graceful stop: its key is deleted, so what
// it held passes on at once instead of after the TTL.
func (l *lease) release() {
	l.mu.Lock()
	id, rev, epoch := l.id, l.rev, l.epoch
	if epoch != nil && epoch.Err() == nil {
		l.end(errLeaseLost)
	}
	l.mu.Unlock()
	if epoch == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.kv.Purge(ctx, leaseKey(id), jetstream.LastRevision(rev), jetstream.PurgeTTL(lockMarkerTTL)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		l.b.log.Warn().Err(err).Str("lease", id).Msg("cannot end the lease on the bus: what it held passes on when it expires")
	}
}

// clearPredecessors ends the leases an embedded broker's predecessor on
// the same data dir left (it was killed): the data dir's lock says that
// broker is gone, so its operations need not wait for the TTL.
func (l *lease) clearPredecessors(ctx context.Context) {
	if l.info.DataDir == "" {
		return
	}
	keys, err := l.kv.ListKeys(ctx, jetstream.MetaOnly())
	if err != nil {
		return
	}
	for k := range keys.Keys() {
		if len(k) <= len(leaseKeyPrefix) || k[:len(leaseKeyPrefix)] != leaseKeyPrefix {
			continue
		}
		e, err := l.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var info schemas.LockLease
		if json.Unmarshal(e.Value(), &info) != nil || info.DataDir != l.info.DataDir || info.Host != l.info.Host {
			continue
		}
		if err := l.kv.Purge(ctx, k, jetstream.LastRevision(e.Revision()), jetstream.PurgeTTL(lockMarkerTTL)); err == nil {
			l.b.log.Info().Str("lease", k[len(leaseKeyPrefix):]).Str("broker", info.Broker).Msg("ended the lease of the previous broker on this data dir")
		}
	}
}
