package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// window is where reading the last N matching messages of a stream starts.
type window struct {
	// Start is the stream sequence to start an ordered consumer at, unless
	// StartTime is set.
	Start uint64
	// StartTime, when set, is the time to start an ordered consumer at
	// (deliver by start time) instead.
	StartTime time.Time
	// Want is how many matching messages there are from Start (or
	// StartTime) on, at most N: reading stops after that many.
	Want uint64
}

// lastN finds the stream sequence of the N-th last message matching
// filters (all messages when filters is empty), so that a consumer started
// there delivers exactly the last N matching messages, oldest first.
//
// The server keeps a per-subject index, and a consumer created with
// DeliverByStartSequence reports in its info how many matching messages it
// has pending from that sequence on (num_pending), computed from that index
// without reading the messages. Call that count f(s); it only goes down as
// s grows, by one at every matching message. lastN looks for the largest s
// with f(s) >= N, which is the wanted message (f(s) == N exactly there):
//
//   - f(first) <= N: fewer than N match; start at the first sequence.
//   - f(last-N+1) >= N: the last N messages all match (an unfiltered or
//     single-type stream); one probe settles it.
//   - otherwise binary search between first and last-N+1: O(log(stream
//     length)) probes, each one short-lived ephemeral consumer (memory
//     storage, one replica, no acks) that is deleted right away.
//
// No message is read and no durable state is left behind. The answer is a
// snapshot: messages published meanwhile may shift the window by as many.
func lastN(ctx context.Context, s jetstream.Stream, filters []string, n uint64) (window, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return window{}, err
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 || first == 0 || first > last {
		return window{Start: last + 1}, nil
	}
	if n == 0 {
		return window{Start: last + 1}, nil
	}
	f := func(seq uint64) (uint64, error) { return pendingFrom(ctx, s, filters, seq) }

	total, err := f(first)
	if err != nil {
		return window{}, err
	}
	if total <= n {
		if total == 0 {
			return window{Start: last + 1}, nil
		}
		return window{Start: first, Want: total}, nil
	}
	// total > n implies last-first+1 > n, so hi >= first+1.
	lo, hi := first, last-n+1
	v, err := f(hi)
	if err != nil {
		return window{}, err
	}
	if v >= n {
		return window{Start: hi, Want: n}, nil
	}
	// Invariant: f(lo) >= n > f(hi).
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		v, err := f(mid)
		if err != nil {
			return window{}, err
		}
		if v >= n {
			lo = mid
		} else {
			hi = mid
		}
	}
	return window{Start: lo, Want: n}, nil
}

// lastNSince is lastN over the messages stored at or after since: the
// last n of those, or all of them when there are n or fewer (then read
// from since by start time). A zero since is lastN itself.
//
// One more probe settles it: a consumer delivering by start time reports
// in num_pending how many matching messages it would deliver. When that
// is more than n, the last n all come after since, which is lastN.
func lastNSince(ctx context.Context, s jetstream.Stream, filters []string, n uint64, since time.Time) (window, error) {
	if since.IsZero() || n == 0 {
		return lastN(ctx, s, filters, n)
	}
	p, err := pendingSince(ctx, s, filters, since)
	if err != nil {
		return window{}, err
	}
	if p <= n {
		return window{StartTime: since, Want: p}, nil
	}
	return lastN(ctx, s, filters, n)
}

// firstNFrom is the window of the first n messages matching filters from
// stream sequence from on (fewer when fewer match): one probe counts them.
// A sequence before the stream's first starts at its first; one after its
// last is where new messages will come.
func firstNFrom(ctx context.Context, s jetstream.Stream, filters []string, n, from uint64) (window, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return window{}, err
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if from < first {
		from = first
	}
	if n == 0 || info.State.Msgs == 0 || from > last {
		return window{Start: max(from, last+1)}, nil
	}
	p, err := pendingFrom(ctx, s, filters, from)
	if err != nil {
		return window{}, err
	}
	return window{Start: from, Want: min(p, n)}, nil
}

// pendingFrom returns how many messages matching filters the stream holds
// from sequence seq on, read from the num_pending of a probe consumer.
func pendingFrom(ctx context.Context, s jetstream.Stream, filters []string, seq uint64) (uint64, error) {
	return probePending(ctx, s, filters, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   seq,
	}, fmt.Sprintf("from sequence %d", seq))
}

// pendingSince returns how many messages matching filters the stream holds
// that were stored at or after since.
func pendingSince(ctx context.Context, s jetstream.Stream, filters []string, since time.Time) (uint64, error) {
	return probePending(ctx, s, filters, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &since,
	}, "from "+since.UTC().Format(time.RFC3339Nano))
}

// probePending creates a probe consumer starting where cfg says and returns its
// num_pending; the probe is deleted right away.
func probePending(ctx context.Context, s jetstream.Stream, filters []string, cfg jetstream.ConsumerConfig, from string) (uint64, error) {
	cfg.AckPolicy = jetstream.AckNonePolicy
	cfg.MemoryStorage = true
	cfg.Replicas = 1
	cfg.InactiveThreshold = 10 * time.Second // cleans up after a crash
	setFilters(&cfg.FilterSubject, &cfg.FilterSubjects, filters)
	c, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("probe %s: %w", from, err)
	}
	info := c.CachedInfo()
	// Delete right away; InactiveThreshold covers a failed delete.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = s.DeleteConsumer(dctx, info.Name)
	cancel()
	return info.NumPending, nil
}

func setFilters(one *string, many *[]string, filters []string) {
	switch len(filters) {
	case 0:
	case 1:
		*one = filters[0]
	default:
		*many = filters
	}
}
