package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/cenats"
)

// Source is the CloudEvents source of every core event.
const Source = "/plugbus/broker"

// Publisher publishes core CloudEvents into the event stream.
type Publisher struct {
	js      jetstream.JetStream
	prefix  string
	metrics *metrics
}

// NewPublisher returns a Publisher that publishes under prefix.
func NewPublisher(js jetstream.JetStream, prefix string, m *metrics) *Publisher {
	return &Publisher{js: js, prefix: prefix, metrics: m}
}

// EventOption sets an optional attribute of a core event.
type EventOption func(*event.Event)

// WithSubject sets the CloudEvent subject: the object the event is about,
// such as "job/demo", "machine/m1", "alert/<id>" or "plugin/incrementer".
func WithSubject(subject string) EventOption {
	return func(e *event.Event) { e.SetSubject(subject) }
}

// NewEvent builds a core CloudEvent of eventType carrying data, with a fresh
// id, the broker's source, the time and the data schema set. The data is
// validated against the type's schema: a failure is a bug in the broker.
func NewEvent(eventType string, data any, opts ...EventOption) (*event.Event, error) {
	if err := schemas.ValidateValue(schemas.EventSchemaPath(eventType), data); err != nil {
		return nil, fmt.Errorf("event %s data: %w", eventType, err)
	}
	e := event.New()
	e.SetID(uuid.NewString())
	e.SetSource(Source)
	e.SetType(eventType)
	e.SetTime(time.Now().UTC())
	e.SetDataSchema(schemas.EventSchemaID(eventType))
	for _, o := range opts {
		o(&e)
	}
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return nil, fmt.Errorf("encode %s data: %w", eventType, err)
	}
	return &e, nil
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

// PublishEvent publishes an already built event on its type's subject.
func (p *Publisher) PublishEvent(ctx context.Context, e *event.Event) error {
	msg, err := cenats.Encode(ctx, schemas.EventSubject(p.prefix, e.Type()), e)
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
