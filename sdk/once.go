package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// ErrNotRunning is returned by calls that need the bus before Run
// connected (Once).
var ErrNotRunning = errors.New("plugin is not running: call it from a handler, or after Ready")

// handledMark is the value Once stores for a key it marked done.
type handledMark struct {
	At       time.Time `json:"at"`
	Instance string    `json:"instance,omitempty"`
}

// Once runs fn unless key was already marked done, and marks key done once
// fn has succeeded, so a side effect (a POST, an email, a charge) is not
// repeated when the same work comes again: an event redelivered after a
// crash, or after its acknowledgement was lost. Keys are remembered in the
// bus's KV bucket plugbus_handled, below the plugin's name
// (schemas.HandledKey), for as long as the event stream keeps events (the
// broker's event max age, 7 days by default); a key may hold any
// characters. Once returns fn's error as it is, and nil without calling fn
// for a key already done.
//
// What it guarantees, and what not:
//
//   - Never lost: a key is marked only after fn returned nil, so a failed
//     or interrupted fn is run again next time.
//   - The mark is written after the side effect: a crash (or a lost
//     connection) in the instant between the two leaves the key unmarked,
//     and the side effect happens again on the next delivery. Once narrows
//     duplicates to that window; it cannot close it.
//   - It is not a lock: two instances given the same key at the same time
//     (a redelivery to another instance while the first still runs, after
//     its ack wait ran out) may both find it unmarked and both run fn.
//     Claiming the key before fn would close that, but a crash between the
//     claim and the side effect would then lose the side effect, which Once
//     never does.
//
// When the bucket cannot be read, Once returns an error without calling
// fn (an event is then retried); when the mark cannot be written after fn
// succeeded, it logs a warning and returns nil, since failing would make
// the retry repeat what was just done. Once needs the running plugin: before
// Run connects it returns an error wrapping ErrNotRunning. Its credentials
// allow a plugin the keys below its own name only.
func (p *Plugin) Once(ctx context.Context, key string, fn func(context.Context) error) error {
	if key == "" {
		return errors.New("once: empty key: pass the id of the work to do once, such as the event id")
	}
	kv, err := p.handledBucket(ctx)
	if err != nil {
		return fmt.Errorf("once %q: %w", key, err)
	}
	k := schemas.HandledKey(p.manifest.Name, key)
	switch _, err := kv.Get(ctx, k); {
	case err == nil:
		p.stats.onceSkipped.Add(1)
		p.Logger().Debug().Str("key", key).Msg("already done; not doing it again")
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
	default:
		return fmt.Errorf("once %q: check whether it was done (bucket %s): %w; it is tried again later", key, schemas.BucketHandled, err)
	}
	if err := fn(ctx); err != nil {
		return err
	}
	mark, _ := json.Marshal(handledMark{At: time.Now().UTC(), Instance: p.InstanceID()})
	// Create, not Put: another instance may have marked it meanwhile
	// (both ran fn), and the first mark stays.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := kv.Create(mctx, k, mark); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		p.Logger().Warn().Err(err).Str("key", key).Msg("done, but cannot mark it done: a redelivery would do it again")
	}
	return nil
}

// OnceByEventID wraps an event handler so that it runs at most once per
// event id, as [Plugin.Once] with the event's id as the key: a redelivery
// of an event whose handler already succeeded (its acknowledgement lost,
// the instance killed right after) is acknowledged without calling h. The
// same caveats apply: a crash between h's side effect and the mark repeats
// it, and two instances handling the same event at once may both run h.
//
// A replay (docs/replay.md) is an operator asking for events to be handled
// again, so a replayed event runs h once more: once per replay, keyed by
// the event id and the replay's id (ReplayOf), so a redelivery within the
// replay still does not repeat it. A handler that must never repeat a side
// effect, even on a replay, calls p.Once(ctx, e.ID(), ...) itself, which
// finds the mark its first handling left.
func (p *Plugin) OnceByEventID(h EventHandler) EventHandler {
	if h == nil {
		panic("sdk: OnceByEventID: nil handler")
	}
	return func(ctx context.Context, e event.Event) error {
		return p.Once(ctx, onceKey(e), func(ctx context.Context) error { return h(ctx, e) })
	}
}

// onceKey is OnceByEventID's key for an event: its id, with the replay's
// id after it for a replayed event.
func onceKey(e event.Event) string {
	if r := ReplayOf(e); r != "" {
		return e.ID() + "@replay:" + r
	}
	return e.ID()
}

// handledBucket returns the plugbus_handled bucket, bound on first use.
func (p *Plugin) handledBucket(ctx context.Context) (jetstream.KeyValue, error) {
	p.mu.RLock()
	js, kv := p.js, p.handled
	p.mu.RUnlock()
	if kv != nil {
		return kv, nil
	}
	if js == nil {
		return nil, ErrNotRunning
	}
	kv, err := js.KeyValue(ctx, schemas.BucketHandled)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s (the broker creates it; is the broker older than this SDK?): %w", schemas.BucketHandled, err)
	}
	p.mu.Lock()
	p.handled = kv
	p.mu.Unlock()
	return kv, nil
}
