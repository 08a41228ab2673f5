package broker

import (
	"context"
	"runtime"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
)

// This file is the part of /metrics read at scrape time rather than counted
// as things happen: the registry's plugins and their states (from the
// broker's cache, no I/O) and what JetStream says about each plugin's
// consumer and about the streams (one consumer listing and one stream info
// per stream, bounded by scrapeTimeout). Every broker replica reports the
// same values: aggregate them with max, not sum.

// scrapeTimeout bounds the JetStream requests of one scrape.
const scrapeTimeout = 3 * time.Second

// pluginStates lists every plugin state, in lifecycle order: the values
// of the state label of plugbus_plugin_state and plugbus_plugins.
var pluginStates = []schemas.PluginState{
	schemas.StateRegistered, schemas.StateInitializing, schemas.StateConfiguring, schemas.StateVerifying,
	schemas.StateActive, schemas.StateError, schemas.StateStale,
}

// metricStreams are the streams whose size /metrics reports.
var metricStreams = []string{schemas.StreamEvents, schemas.StreamDLQ, schemas.StreamLogs}

var (
	descPluginState = prometheus.NewDesc("plugbus_plugin_state",
		"1 for the state a plugin is in, 0 for the others (one series per plugin and known state).",
		[]string{"plugin", "state"}, nil)
	descPlugins = prometheus.NewDesc("plugbus_plugins",
		"Registered plugins by state.", []string{"state"}, nil)
	descPending = prometheus.NewDesc("plugbus_consumer_pending_messages",
		"Events in the stream the plugin's durable consumer has not been delivered yet (JetStream num_pending): the plugin's lag.",
		[]string{"plugin"}, nil)
	descAckPending = prometheus.NewDesc("plugbus_consumer_ack_pending_messages",
		"Events delivered to the plugin and not acknowledged yet (JetStream num_ack_pending).",
		[]string{"plugin"}, nil)
	descRedelivered = prometheus.NewDesc("plugbus_consumer_redelivered_messages",
		"Events delivered more than once and not acknowledged yet (JetStream num_redelivered).",
		[]string{"plugin"}, nil)
	descDelivered = prometheus.NewDesc("plugbus_consumer_delivered_total",
		"Deliveries made by the plugin's durable consumer, redeliveries included (JetStream delivered.consumer_seq; restarts at 0 if the consumer is recreated).",
		[]string{"plugin"}, nil)
	descStreamMsgs = prometheus.NewDesc("plugbus_stream_messages",
		"Messages in a plugbus stream (PLUGBUS_EVENTS, PLUGBUS_DLQ, PLUGBUS_LOGS).", []string{"stream"}, nil)
	descStreamBytes = prometheus.NewDesc("plugbus_stream_bytes",
		"Bytes stored in a plugbus stream.", []string{"stream"}, nil)
	descJetStreamUp = prometheus.NewDesc("plugbus_jetstream_up",
		"1 when this scrape could read consumer and stream info from JetStream, 0 when it could not (the consumer and stream series are then missing).",
		nil, nil)
)

// busCollector reads the registry cache and JetStream at scrape time.
type busCollector struct {
	reg    *registry
	events jetstream.Stream
	js     jetstream.JetStream
}

var _ prometheus.Collector = (*busCollector)(nil)

// Describe sends every descriptor the collector uses.
func (c *busCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPluginState, descPlugins, descPending, descAckPending, descRedelivered,
		descDelivered, descStreamMsgs, descStreamBytes, descJetStreamUp} {
		ch <- d
	}
}

// Collect sends the plugin states, consumer lag and stream sizes.
func (c *busCollector) Collect(ch chan<- prometheus.Metric) {
	records := c.reg.cached()
	byState := map[schemas.PluginState]int{}
	for _, rec := range records {
		byState[rec.State]++
		for _, st := range pluginStates {
			v := 0.0
			if rec.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descPluginState, prometheus.GaugeValue, v, rec.Name, string(st))
		}
	}
	for _, st := range pluginStates {
		ch <- prometheus.MustNewConstMetric(descPlugins, prometheus.GaugeValue, float64(byState[st]), string(st))
	}

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	up := 1.0
	infos := map[string]*jetstream.ConsumerInfo{}
	lister := c.events.ListConsumers(ctx)
	for info := range lister.Info() {
		infos[info.Name] = info
	}
	if lister.Err() != nil {
		up = 0
	} else {
		for _, rec := range records {
			info := infos[rec.Consumer]
			if rec.Consumer == "" || info == nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(info.NumPending), rec.Name)
			ch <- prometheus.MustNewConstMetric(descAckPending, prometheus.GaugeValue, float64(info.NumAckPending), rec.Name)
			ch <- prometheus.MustNewConstMetric(descRedelivered, prometheus.GaugeValue, float64(info.NumRedelivered), rec.Name)
			ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(info.Delivered.Consumer), rec.Name)
		}
	}
	for _, name := range metricStreams {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			up = 0
			continue
		}
		st := s.CachedInfo().State
		ch <- prometheus.MustNewConstMetric(descStreamMsgs, prometheus.GaugeValue, float64(st.Msgs), name)
		ch <- prometheus.MustNewConstMetric(descStreamBytes, prometheus.GaugeValue, float64(st.Bytes), name)
	}
	ch <- prometheus.MustNewConstMetric(descJetStreamUp, prometheus.GaugeValue, up)
}

// buildInfo is plugbus_build_info: always 1, the labels say which build.
func buildInfo() prometheus.Collector {
	rev := version.Read().Revision
	if rev == "" {
		rev = "unknown"
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "plugbus_build_info",
		Help: "Always 1; the labels say which broker build this is (revision: the VCS commit, unknown when built without VCS info).",
	}, []string{"version", "goversion", "revision"})
	g.WithLabelValues(Version, runtime.Version(), rev).Set(1)
	return g
}
