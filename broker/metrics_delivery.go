package broker

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
)

// Acks and naks per plugin come from JetStream itself: the server publishes
// an ack metric for every acknowledgement of a consumer whose sample
// frequency is 100% (every plugin consumer's: ConsumerConfig) and an
// advisory for every nak. The broker replicas share them in one queue
// group, so each is counted once across replicas: sum these counters over
// the replicas (unlike the consumer gauges, which every replica reports
// alike). They are core NATS messages: the ones sent while no broker runs
// are not counted.

// Subjects of the ack metric and the nak advisory of the event stream's
// consumers; the last token is the consumer.
const (
	ackMetricSubject   = "$JS.EVENT.METRIC.CONSUMER.ACK." + schemas.StreamEvents + ".*"
	nakAdvisorySubject = "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED." + schemas.StreamEvents + ".*"
	// deliveryQueue is the queue group the broker replicas share.
	deliveryQueue = "plugbus-broker-delivery-metrics"
)

// ackSampleFrequency is the sample frequency of every plugin consumer: the
// server reports every acknowledgement (plugbus_consumer_acked_total).
const ackSampleFrequency = "100%"

// startMetrics pre-initialises the API series, adds the scrape-time
// collector and starts counting acks and naks. The returned function stops
// the counting.
func (b *Broker) startMetrics() (stop func(), err error) {
	b.metrics.preinitAPI(b.endpoints())
	for _, rec := range b.reg.cached() {
		b.metrics.pluginSeen(rec)
	}
	if err := b.metrics.reg.Register(&busCollector{reg: b.reg, events: b.st.events, js: b.js}); err != nil {
		return nil, fmt.Errorf("register bus metrics: %w", err)
	}
	var subs []*nats.Subscription
	stop = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for subject, vec := range map[string]func(string){
		ackMetricSubject:   func(p string) { b.metrics.acked.WithLabelValues(p).Inc() },
		nakAdvisorySubject: func(p string) { b.metrics.nakked.WithLabelValues(p).Inc() },
	} {
		count := vec
		s, err := b.nc.QueueSubscribe(subject, deliveryQueue, func(m *nats.Msg) {
			consumer := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
			if p, ok := strings.CutPrefix(consumer, schemas.ConsumerName("")); ok && b.reg.state(p) != "" {
				count(p)
			}
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("subscribe %s: %w", subject, err)
		}
		_ = s.SetPendingLimits(1<<20, 64<<20)
		subs = append(subs, s)
	}
	return stop, nil
}
