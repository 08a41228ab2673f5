package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// errUnchanged, returned by an updateJSON function, leaves the key as it
// is; updateJSON passes it back.
var errUnchanged = errors.New("unchanged")

// getJSON reads key from kv into v and returns its revision.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

// updateJSON reads key (absent counts as the zero T), applies fn and writes
// the result compare-and-set on the revision read. Only a revision
// conflict (another writer got there first) is retried, after a short
// backoff, on a fresh read; any other error ends it. It returns what was
// written.
func updateJSON[T any](ctx context.Context, kv jetstream.KeyValue, key string, fn func(cur *T, exists bool) error) (T, error) {
	for attempt := 0; ; attempt++ {
		var cur T
		rev, err := getJSON(ctx, kv, key, &cur)
		exists := err == nil
		if err != nil && !isNotFound(err) {
			return cur, fmt.Errorf("read %s/%s: %w", kv.Bucket(), key, storeError(err))
		}
		if err := fn(&cur, exists); err != nil {
			return cur, err
		}
		if err := checkLock(ctx); err != nil {
			return cur, err
		}
		body, err := json.Marshal(cur)
		if err != nil {
			return cur, fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
		}
		if exists {
			_, err = kv.Update(ctx, key, body, rev)
		} else {
			_, err = kv.Create(ctx, key, body)
		}
		if err == nil {
			return cur, nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err)
		if !conflict {
			return cur, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, storeError(err))
		}
		if attempt >= maxConflictRetries {
			e := schemas.Errorf(schemas.CodeConflict, "", "%s/%s changed under every one of %d attempts to write it: retry later", kv.Bucket(), key, attempt+1)
			return cur, e
		}
		if err := conflictBackoff(ctx, attempt); err != nil {
			return cur, err
		}
	}
}

// maxConflictRetries bounds the attempts of a compare-and-set write that
// keeps losing to other writers.
const maxConflictRetries = 20

// conflictBackoff waits before attempt+1 of a compare-and-set write that
// lost to another writer: a random time up to 1 ms × 2^attempt (at most
// 100 ms), so writers racing on one key spread out instead of colliding
// again. It fails when ctx ends first.
func conflictBackoff(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<min(attempt, 7), 100*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + time.Microsecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return schemas.Errorf(schemas.CodeTimeout, "", "gave up retrying a write that lost to other writers: %v (nothing was written; retry)", ctx.Err())
	}
}

// storeError turns JetStream's "nobody answered" into an unavailable
// error that says what that means for the caller; other errors are
// returned as they are.
//
//   - No response from the stream (no leader: a NATS cluster without a
//     quorum, or a stream being moved): nothing was stored.
//   - No answer in time: the write may or may not have been stored; a
//     retry with the same idempotency key finds out.
func storeError(err error) error {
	var pe *schemas.Error
	if err == nil || errors.As(err, &pe) {
		return err
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstreamClusterNotAvailable:
		e := schemas.Errorf(schemas.CodeUnavailable, "", "JetStream did not take it (%v): the stream has no leader, as when a NATS cluster lost its quorum: nothing was stored; retry once the cluster is back", err)
		e.Details = map[string]any{schemas.DetailCommitted: false}
		return e
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.Canceled):
		return schemas.Errorf(schemas.CodeUnavailable, "", "JetStream did not answer in time (%v): it may or may not be stored; retry with the same idempotency key to find out", err)
	}
	return err
}

// jetstreamClusterNotAvailable is JetStream's "JetStream system
// temporarily unavailable" (no meta leader).
const jetstreamClusterNotAvailable jetstream.ErrorCode = 10008

// listJSON decodes every value of a bucket.
func listJSON[T any](ctx context.Context, kv jetstream.KeyValue) ([]T, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	out := []T{}
	for k := range keys.Keys() {
		var v T
		if _, err := getJSON(ctx, kv, k, &v); err != nil {
			if isNotFound(err) {
				continue
			}
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
