package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
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
// the result with compare-and-set, retrying when another writer got there
// first. It returns what was written.
func updateJSON[T any](ctx context.Context, kv jetstream.KeyValue, key string, fn func(cur *T, exists bool) error) (T, error) {
	for attempt := 0; ; attempt++ {
		var cur T
		rev, err := getJSON(ctx, kv, key, &cur)
		exists := err == nil
		if err != nil && !isNotFound(err) {
			return cur, err
		}
		if err := fn(&cur, exists); err != nil {
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
		if attempt >= 20 || ctx.Err() != nil {
			return cur, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, err)
		}
		// A concurrent writer changed the key: read it again.
	}
}

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
