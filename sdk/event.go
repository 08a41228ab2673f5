package sdk

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// EventHandler handles one CloudEvent delivered from the plugin's durable
// consumer. Its context ends a little before the delivery's ack wait runs
// out (a tenth of it, at most 2s, earlier), so that the SDK still answers
// for the delivery in time: on the last delivery allowed, an error — the
// context's own included — is kept as the dead letter's reason. What it
// returns decides the event's fate: nil acknowledges it, [Permanent]
// terminates it (dead letter), [RetryAfter] redelivers it after the given
// delay, and any other error redelivers it after the manifest's next backoff
// delay. A panic counts as an ordinary error.
type EventHandler func(ctx context.Context, e event.Event) error

// DecodeData decodes the event's data (JSON) into a T. A failure is marked
// [Permanent], since redelivering the same bytes cannot fix it, so a handler
// can return the error as it is.
func DecodeData[T any](e event.Event) (T, error) {
	var v T
	if err := e.DataAs(&v); err != nil {
		return v, Permanent(fmt.Errorf("decode data of event %s (%s): %w", e.ID(), e.Type(), err))
	}
	return v, nil
}

// Delivery describes the JetStream delivery of the event being handled.
type Delivery struct {
	// Subject the event was published on.
	Subject string
	// StreamSeq is the event's sequence number in the event stream.
	StreamSeq uint64
	// NumDelivered counts deliveries of this event, this one included (1 on
	// the first attempt).
	NumDelivered uint64
	// MaxDeliver is the consumer's delivery limit (-1: unlimited).
	MaxDeliver int
	// Published is when the event was stored in the stream.
	Published time.Time
	// Replay is the id of the replay the event is redelivered by (an
	// operator's `busctl plugins replay`), "" when it comes from the
	// plugin's durable consumer. See ReplayOf.
	Replay string
	// DeadLetter is the sequence in the dead-letter stream of the dead
	// letter this event is replayed from (an operator's `busctl dlq
	// replay`: the event this plugin gave up on, sent to it again with its
	// own id), 0 otherwise. Subject is then the plugin's redelivery subject
	// (wire.RedeliverySubject).
	DeadLetter uint64
}

// Replayed reports whether the event is redelivered by a replay.
func (d Delivery) Replayed() bool { return d.Replay != "" }

// LastAttempt reports whether this delivery is the last one allowed.
func (d Delivery) LastAttempt() bool {
	return d.MaxDeliver > 0 && d.NumDelivered >= uint64(d.MaxDeliver)
}

type deliveryKey struct{}

// DeliveryFromContext returns the delivery of the event an EventHandler is
// handling; ok is false outside an event handler.
func DeliveryFromContext(ctx context.Context) (d Delivery, ok bool) {
	d, ok = ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}

// eventRoutes maps event types to handlers. A pattern is an exact type, a
// type prefix ending in ".*" that matches one more level
// ("io.plugbus.alert.v1.*" matches "io.plugbus.alert.v1.fired" but not
// "io.plugbus.alert.v1.x.y"), or "*" for every type. The most specific
// pattern wins: exact, then the longest prefix, then "*".
type eventRoutes struct {
	exact    map[string]EventHandler
	prefixes []prefixRoute // sorted longest first
	any      EventHandler
}

type prefixRoute struct {
	prefix string // with the trailing dot
	h      EventHandler
}

func (r *eventRoutes) add(pattern string, h EventHandler) error {
	switch {
	case pattern == "":
		return fmt.Errorf("event type must not be empty")
	case h == nil:
		return fmt.Errorf("event handler for %q must not be nil", pattern)
	case pattern == "*":
		if r.any != nil {
			return fmt.Errorf("a handler for every event type (\"*\") is already registered")
		}
		r.any = h
	case strings.HasSuffix(pattern, ".*"):
		prefix := strings.TrimSuffix(pattern, "*")
		if strings.Contains(prefix, "*") || prefix == "." {
			return fmt.Errorf("event type pattern %q: only a trailing \".*\" is allowed", pattern)
		}
		for _, p := range r.prefixes {
			if p.prefix == prefix {
				return fmt.Errorf("a handler for %q is already registered", pattern)
			}
		}
		r.prefixes = append(r.prefixes, prefixRoute{prefix: prefix, h: h})
		sort.SliceStable(r.prefixes, func(i, j int) bool { return len(r.prefixes[i].prefix) > len(r.prefixes[j].prefix) })
	case strings.Contains(pattern, "*"):
		return fmt.Errorf("event type pattern %q: only a trailing \".*\" is allowed", pattern)
	default:
		if r.exact == nil {
			r.exact = map[string]EventHandler{}
		}
		if _, dup := r.exact[pattern]; dup {
			return fmt.Errorf("a handler for %q is already registered", pattern)
		}
		r.exact[pattern] = h
	}
	return nil
}

func (r *eventRoutes) lookup(eventType string) EventHandler {
	if h, ok := r.exact[eventType]; ok {
		return h
	}
	for _, p := range r.prefixes {
		if rest, ok := strings.CutPrefix(eventType, p.prefix); ok && rest != "" && !strings.Contains(rest, ".") {
			return p.h
		}
	}
	return r.any
}

func (r *eventRoutes) empty() bool {
	return len(r.exact) == 0 && len(r.prefixes) == 0 && r.any == nil
}

// patterns returns every registered pattern.
func (r *eventRoutes) patterns() []string {
	var out []string
	for t := range r.exact {
		out = append(out, t)
	}
	for _, p := range r.prefixes {
		out = append(out, p.prefix+"*")
	}
	if r.any != nil {
		out = append(out, "*")
	}
	sort.Strings(out)
	return out
}

// patternMatches reports whether a handler pattern (as HandleEvent takes
// it) covers a declared event type, which may itself be a pattern ending
// in ".*".
func patternMatches(pattern, declared string) bool {
	if pattern == "*" || pattern == declared {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		rest, ok := strings.CutPrefix(declared, prefix)
		return ok && rest != "" && !strings.Contains(rest, ".")
	}
	// An exact handler under a declared wildcard ("io.plugbus.alert.v1.*").
	if prefix, ok := strings.CutSuffix(declared, "*"); ok {
		rest, ok := strings.CutPrefix(pattern, prefix)
		return ok && rest != "" && !strings.Contains(rest, ".")
	}
	return false
}
