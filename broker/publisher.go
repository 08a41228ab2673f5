package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Source is the CloudEvents source of every core event.
const Source = wire.BrokerSource

// Publisher publishes core CloudEvents into the event stream.
type Publisher struct {
	js      jetstream.JetStream
	prefix  string
	metrics *metrics
	// check validates each event's data against its schema (Config.SelfCheck).
	check bool
}

// NewPublisher returns a Publisher that publishes under prefix on js.
func NewPublisher(js jetstream.JetStream, prefix string) *Publisher {
	return &Publisher{js: js, prefix: prefix, metrics: newMetrics()}
}

// EventOption sets an optional attribute of a core event.
type EventOption func(*event.Event)

// WithSubject sets the CloudEvent subject: the object the event is about,
// such as "job/demo", "machine/m1", "alert/<id>" or "plugin/incrementer".
func WithSubject(subject string) EventOption {
	return func(e *event.Event) { e.SetSubject(subject) }
}

// WithID sets the event's id (and so its JetStream message id) instead of
// a fresh one: an event derived from a stored fact gets an id derived from
// it, so whoever publishes it twice stores it once.
func WithID(id string) EventOption {
	return func(e *event.Event) { e.SetID(id) }
}

// NewEvent builds a core CloudEvent of eventType carrying data, with a fresh
// id, the broker's source, the time and the data schema set. The data is
// encoded once; it is not validated here (the broker builds it from
// validated input; Config.SelfCheck checks it on publish). The event is
// what event.New and its setters make (TestNewEventMatchesSetters), built
// without parsing the source and the schema's URL for every event.
func NewEvent(eventType string, data any, opts ...EventOption) (*event.Event, error) {
	var body []byte
	if data != nil {
		var err error
		if body, err = json.Marshal(data); err != nil {
			return nil, fmt.Errorf("encode %s data: %w", eventType, err)
		}
	}
	schema, err := dataSchemaURI(eventType)
	if err != nil {
		return nil, err
	}
	ct := event.ApplicationJSON
	e := &event.Event{Context: &event.EventContextV1{
		ID: nuid.Next(), Source: sourceRef, Type: eventType, Time: &types.Timestamp{Time: time.Now().UTC()},
		DataSchema: schema, DataContentType: &ct,
	}, DataEncoded: body}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// sourceRef is Source, parsed once.
var sourceRef = func() types.URIRef {
	u, err := url.Parse(Source)
	if err != nil {
		panic(err)
	}
	return types.URIRef{URL: *u}
}()

// schemaURIs caches each event type's data schema URL, parsed: events
// share it (nothing changes an event's URL in place).
var schemaURIs sync.Map // event type → *types.URI

func dataSchemaURI(eventType string) (*types.URI, error) {
	if u, ok := schemaURIs.Load(eventType); ok {
		return u.(*types.URI), nil
	}
	pu, err := url.Parse(schemas.EventSchemaID(eventType))
	if err != nil {
		return nil, fmt.Errorf("data schema of %s: %w", eventType, err)
	}
	u, _ := schemaURIs.LoadOrStore(eventType, &types.URI{URL: *pu})
	return u.(*types.URI), nil
}

// Publish builds and publishes a core event and returns its id. The id is
// also the JetStream message id, so a re-publish of the same event is
// deduplicated by the stream.
func (p *Publisher) Publish(ctx context.Context, eventType string, data any, opts ...EventOption) (string, error) {
	e, err := NewEvent(eventType, data, opts...)
	if err != nil {
		return "", err
	}
	return e.ID(), p.PublishEvent(ctx, e)
}

// encode turns e into its stream message, checking its data first when
// the publisher self-checks. An event with no trace context of its own
// gets ctx's (the CloudEvents distributed-tracing extension).
func (p *Publisher) encode(ctx context.Context, e *event.Event) (*nats.Msg, error) {
	wire.SetEventTrace(ctx, e)
	if p.check {
		if err := schemas.Validate(schemas.EventSchemaPath(e.Type()), e.Data()); err != nil {
			return nil, fmt.Errorf("event %s data: %w", e.Type(), err)
		}
	}
	return wire.EncodeEvent(ctx, wire.EventSubject(p.prefix, e.Type()), e)
}

// PublishEvent publishes an already built event on its type's subject and
// waits for the stream's acknowledgement.
func (p *Publisher) PublishEvent(ctx context.Context, e *event.Event) error {
	msg, err := p.encode(ctx, e)
	if err != nil {
		return err
	}
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID())); err != nil {
		p.metrics.publishErrors.WithLabelValues(e.Type()).Inc()
		return fmt.Errorf("publish %s event %s: %w", e.Type(), e.ID(), err)
	}
	p.metrics.eventsPublished.WithLabelValues(e.Type()).Inc()
	return nil
}

// PublishAsync builds and publishes a core event without waiting for the
// stream's acknowledgement: the returned future resolves when it is stored.
// At most the JetStream context's async window (4096) is in flight; beyond
// that it blocks. Wait for the future (or AwaitAll) before telling anyone
// the event exists.
func (p *Publisher) PublishAsync(ctx context.Context, eventType string, data any, opts ...EventOption) (jetstream.PubAckFuture, string, error) {
	e, err := NewEvent(eventType, data, opts...)
	if err != nil {
		return nil, "", err
	}
	f, err := p.PublishEventAsync(ctx, e)
	if err != nil {
		return nil, "", err
	}
	return f, e.ID(), nil
}

// PublishEventAsync publishes an already built event without waiting for
// its acknowledgement (see PublishAsync).
func (p *Publisher) PublishEventAsync(ctx context.Context, e *event.Event) (jetstream.PubAckFuture, error) {
	msg, err := p.encode(ctx, e)
	if err != nil {
		return nil, err
	}
	f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(e.ID()))
	if err != nil {
		p.metrics.publishErrors.WithLabelValues(e.Type()).Inc()
		return nil, fmt.Errorf("publish %s event %s: %w", e.Type(), e.ID(), err)
	}
	p.metrics.eventsPublished.WithLabelValues(e.Type()).Inc()
	return f, nil
}

// AwaitAll waits until every future is acknowledged and returns the first
// failure.
func AwaitAll(ctx context.Context, fs ...jetstream.PubAckFuture) error {
	var first error
	for _, f := range fs {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if first == nil {
				first = fmt.Errorf("publish event: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}
