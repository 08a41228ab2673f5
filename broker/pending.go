package broker

import (
	"context"
	"fmt"
	"sync"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// pendingKey carries a request's pending publishes in its context.
type pendingKey struct{}

// pending collects the acknowledgements a request still waits for. Events
// of one request are published without waiting for each ack; the reply is
// sent only once all of them are stored, so nobody hears of an event that
// is not in the stream, and a request costs one ack wait instead of one per
// event.
type pending struct {
	mu sync.Mutex
	fs []jetstream.PubAckFuture
}

func withPending(ctx context.Context) (context.Context, *pending) {
	p := &pending{}
	return context.WithValue(ctx, pendingKey{}, p), p
}

func (p *pending) add(f jetstream.PubAckFuture) {
	p.mu.Lock()
	p.fs = append(p.fs, f)
	p.mu.Unlock()
}

// wait waits for every collected ack.
func (p *pending) wait(ctx context.Context) error {
	p.mu.Lock()
	fs := p.fs
	p.fs = nil
	p.mu.Unlock()
	return AwaitAll(ctx, fs...)
}

// publishLater publishes a core event asynchronously when the request
// collects pending acks (the reply then waits for them), and synchronously
// otherwise. It returns the event id.
func (b *Broker) publishLater(ctx context.Context, eventType string, data any, opts ...EventOption) (string, error) {
	e, err := NewEvent(eventType, data, opts...)
	if err != nil {
		return "", err
	}
	return e.ID(), b.publishEventLater(ctx, e)
}

// publishEventLater is publishLater for an already built event.
func (b *Broker) publishEventLater(ctx context.Context, e *event.Event) error {
	f, err := b.pub.PublishEventAsync(ctx, e)
	if err != nil {
		return err
	}
	if p, ok := ctx.Value(pendingKey{}).(*pending); ok {
		p.add(f)
		return nil
	}
	return AwaitAll(ctx, f)
}

// awaitPending waits for the request's pending publishes; a failure turns
// a successful reply into an internal error (the operation happened, but
// its events are not all stored).
func awaitPending(ctx context.Context, p *pending, resp any, err error) (any, error) {
	if werr := p.wait(ctx); werr != nil && err == nil {
		return nil, &schemas.Error{Code: schemas.CodeInternal,
			Message: fmt.Sprintf("the operation was done but its events could not all be stored: %v", werr)}
	}
	return resp, err
}
