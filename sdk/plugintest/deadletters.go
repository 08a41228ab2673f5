package plugintest

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// DeadLetter is an event the broker moved to the dead-letter stream after
// a plugin gave up on it.
type DeadLetter struct {
	// Reason says why: the plugin's termination reason ("CODE: message"),
	// or that max deliveries were reached.
	Reason string
	// Code is the reason's code (one of the schemas.Reason* constants), ""
	// when the reason carries none.
	Code string
	// Cause is "terminated" or "max_deliveries".
	Cause string
	// Deliveries is how many times the event was delivered.
	Deliveries uint64
	// Subject is the event's original subject.
	Subject string
	// Header and Data are the original message's (its ce- attributes and
	// data), with the dead-letter headers added.
	Header nats.Header
	Data   []byte
}

// DeadLetters returns the dead letters of a plugin's consumer so far, oldest
// first. Combine it with WaitFor to wait for one.
func (b *Bus) DeadLetters(t testing.TB, plugin string) []DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, schemas.StreamDLQ, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.DLQSubject(b.prefix, schemas.ConsumerName(plugin))},
	})
	if err != nil {
		t.Fatalf("plugintest: read dead letters: %v", err)
	}
	var out []DeadLetter
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatalf("plugintest: read dead letters: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			h := m.Headers()
			deliveries, _ := strconv.ParseUint(h.Get(schemas.HeaderDLQDeliveries), 10, 64)
			out = append(out, DeadLetter{
				Reason: h.Get(schemas.HeaderDLQReason), Code: h.Get(schemas.HeaderDLQCode), Cause: h.Get(schemas.HeaderDLQCause),
				Deliveries: deliveries, Subject: h.Get(schemas.HeaderDLQSubject), Header: h, Data: m.Data(),
			})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("plugintest: read dead letters: %v", err)
		}
		if n == 0 {
			return out
		}
	}
}
