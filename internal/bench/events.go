package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// fixedTime keeps encoded payload sizes stable (RFC 3339 with nanoseconds
// drops trailing zeros).
var fixedTime = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)

// seqLabel is the label carrying an event's sequence number in the run, so
// a handler can tell which event it got without decoding the data.
const seqLabel = "bench_seq"

// seqDigits is the width of the sequence label value.
const seqDigits = 9

// jobData returns io.plugbus.job.v1.deployed data whose JSON encoding is
// exactly size bytes, carrying seq.
func jobData(size, seq int) schemas.JobDeployedData {
	d := schemas.JobDeployedData{
		Name: "bench", Version: "1.0.0", Image: "registry.example.com/bench/app:1.0.0",
		Env:        map[string]string{"LOG_LEVEL": "info"},
		Labels:     map[string]string{seqLabel: fmt.Sprintf("%0*d", seqDigits, seq), "pad": ""},
		DeployedAt: fixedTime,
	}
	b, _ := json.Marshal(d)
	if pad := size - len(b); pad > 0 {
		d.Labels["pad"] = strings.Repeat("x", pad)
	}
	return d
}

// alertData returns io.plugbus.alert.v1.fired data carrying seq.
func alertData(seq int) schemas.Alert {
	return schemas.Alert{
		ID: fmt.Sprintf("bench-%0*d", seqDigits, seq), Severity: "warning", Summary: "benchmark alert",
		Labels: map[string]string{seqLabel: fmt.Sprintf("%0*d", seqDigits, seq), "host": "m1"},
		Status: schemas.AlertFiring, FiredAt: fixedTime,
	}
}

// seqMarker precedes the sequence number in encoded data.
var seqMarker = []byte(`"` + seqLabel + `":"`)

// seqOf finds the sequence number in encoded event data; -1 if absent.
func seqOf(data []byte) int {
	i := bytes.Index(data, seqMarker)
	if i < 0 || i+len(seqMarker)+seqDigits > len(data) {
		return -1
	}
	n, err := strconv.Atoi(string(data[i+len(seqMarker) : i+len(seqMarker)+seqDigits]))
	if err != nil {
		return -1
	}
	return n
}

// encodeCore builds the core CloudEvent the broker would publish for data
// and encodes it as the NATS message the bus stores (binary mode).
func encodeCore(prefix, eventType string, data any) (*nats.Msg, error) {
	e, err := broker.NewEvent(eventType, data)
	if err != nil {
		return nil, err
	}
	return wire.EncodeEvent(context.Background(), wire.EventSubject(prefix, eventType), e)
}

// rawCopy returns a message with msg's subject, headers and body and a fresh
// id (ce-id and Nats-Msg-Id), so the stream stores it like a new event:
// the same bytes the bus publishes, published by hand.
func rawCopy(msg *nats.Msg) *nats.Msg {
	h := maps.Clone(msg.Header)
	id := nuid.Next()
	h["ce-id"] = []string{id}
	h[jetstream.MsgIDHeader] = []string{id}
	return &nats.Msg{Subject: msg.Subject, Header: h, Data: msg.Data}
}

// publisher publishes one core event the way the broker does.
type publisher interface {
	Publish(ctx context.Context, eventType string, data any) (string, error)
}

// publisherFunc adapts a function to publisher.
type publisherFunc func(ctx context.Context, eventType string, data any) (string, error)

func (f publisherFunc) Publish(ctx context.Context, eventType string, data any) (string, error) {
	return f(ctx, eventType, data)
}

// realPublisher wraps the broker's own publisher; nil when it cannot be
// reached.
func realPublisher(b *broker.Broker) publisher {
	bp := brokerPublisher(b)
	if bp == nil {
		return nil
	}
	return publisherFunc(func(ctx context.Context, eventType string, data any) (string, error) {
		return bp.Publish(ctx, eventType, data)
	})
}

// brokerPublisher returns the running broker's own event publisher (the
// one every API handler publishes through, on the broker's connection).
func brokerPublisher(b *broker.Broker) *broker.Publisher { return b.Publisher() }

// mirrorPublisher does what broker.(*Publisher).Publish does (NewEvent,
// wire.Encode, a synchronous JetStream publish with the event id as the
// message id) less its two metric increments. It stands in for the broker's
// publisher when that cannot be reached.
type mirrorPublisher struct {
	js     jetstream.JetStream
	prefix string
}

func (p mirrorPublisher) Publish(ctx context.Context, eventType string, data any) (string, error) {
	e, err := broker.NewEvent(eventType, data)
	if err != nil {
		return "", err
	}
	msg, err := wire.EncodeEvent(ctx, wire.EventSubject(p.prefix, e.Type()), e)
	if err != nil {
		return "", err
	}
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID())); err != nil {
		return "", err
	}
	return e.ID(), nil
}

// purge removes subject's messages from the event stream.
func purge(ctx context.Context, js jetstream.JetStream, subject string) error {
	s, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(subject))
}

// prefill publishes n copies of msg (fresh ids) with async publishes and
// waits for every ack.
func prefill(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, n int) error {
	for i := 0; i < n; i++ {
		m := rawCopy(msg)
		if _, err := js.PublishMsgAsync(m); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(60 * time.Second):
		return fmt.Errorf("prefill: %d publishes not acknowledged within 60s", js.PublishAsyncPending())
	}
}
