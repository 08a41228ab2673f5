package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// advisory is the part of JetStream's max_deliver and terminated advisories
// the dead-letter path needs.
type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

// startDLQ consumes the advisory stream: for every event a plugin gave up on
// (max deliveries reached, or terminated as malformed or permanently
// failing) it copies the original message, headers and body intact, into
// the DLQ stream with the reason.
func (b *Broker) startDLQ(ctx context.Context) (jetstream.ConsumeContext, error) {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, schemas.StreamAdvisories, jetstream.ConsumerConfig{
		Durable:     dlqConsumer,
		Description: "plugbus broker dead-letter path",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", dlqConsumer, schemas.StreamAdvisories, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := b.deadLetter(ctx, m); err != nil {
			b.log.Error().Err(err).Str("subject", m.Subject()).Msg("dead-letter failed; will retry")
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", schemas.StreamAdvisories, err)
	}
	return cc, nil
}

func (b *Broker) deadLetter(ctx context.Context, m jetstream.Msg) error {
	var a advisory
	if err := json.Unmarshal(m.Data(), &a); err != nil {
		b.log.Warn().Err(err).Str("subject", m.Subject()).Msg("undecodable advisory dropped")
		return nil
	}
	cause, reason := schemas.CauseTerminated, a.Reason
	if strings.HasPrefix(m.Subject(), advisoryMaxDeliveries) {
		cause = schemas.CauseMaxDeliveries
		reason = fmt.Sprintf("max deliveries reached (%d): the consumer never acknowledged it", a.Deliveries)
	}
	if reason == "" {
		reason = "terminated by the consumer"
	}
	code, _ := schemas.ParseTerminationReason(reason)
	// A replayed event is the plugin's dead letter like any other.
	a.Consumer = schemas.ConsumerPlugin(a.Consumer)
	out := &nats.Msg{Subject: wire.DLQSubject(b.cfg.Prefix, a.Consumer), Header: nats.Header{}}
	orig, err := b.st.events.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		reason += fmt.Sprintf(" (original message %d is no longer in %s: %v)", a.StreamSeq, a.Stream, err)
	} else {
		for k, vs := range orig.Header {
			for _, v := range vs {
				out.Header.Add(k, v)
			}
		}
		out.Data = orig.Data
		out.Header.Set(schemas.HeaderDLQSubject, orig.Subject)
	}
	out.Header.Del("Nats-Msg-Id")
	out.Header.Set(schemas.HeaderDLQReason, reason)
	out.Header.Set(schemas.HeaderDLQCause, cause)
	if code != "" {
		out.Header.Set(schemas.HeaderDLQCode, code)
	}
	out.Header.Set(schemas.HeaderDLQConsumer, a.Consumer)
	out.Header.Set(schemas.HeaderDLQStream, a.Stream)
	out.Header.Set(schemas.HeaderDLQStreamSeq, strconv.FormatUint(a.StreamSeq, 10))
	out.Header.Set(schemas.HeaderDLQDeliveries, strconv.FormatUint(a.Deliveries, 10))
	out.Header.Set(schemas.HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	msgID := fmt.Sprintf("%s-%s-%d", a.Stream, a.Consumer, a.StreamSeq)
	if _, err := b.js.PublishMsg(ctx, out, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish dead letter for %s seq %d: %w", a.Consumer, a.StreamSeq, err)
	}
	b.metrics.deadLetters.WithLabelValues(a.Consumer, cause).Inc()
	if code == schemas.ReasonMalformed || code == schemas.ReasonInvalidData {
		b.metrics.badInput.WithLabelValues(code).Inc()
	}
	b.log.Warn().Str(logging.FieldConsumer, a.Consumer).Uint64(logging.FieldStreamSeq, a.StreamSeq).Str(logging.FieldCode, code).Str("cause", cause).
		Str(logging.FieldReason, reason).Msg("event dead-lettered")
	return nil
}
