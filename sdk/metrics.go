package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
)

// Every plugin instance keeps Prometheus metrics of its own handlers in a
// registry of its own (Plugin.MetricsRegistry), each series labelled with
// the plugin's name. sdk.Main serves them on --metrics-addr
// ($PLUGBUS_METRICS_ADDR); a plugin with its own main mounts
// Plugin.MetricsHandler where it likes. docs/observability.md lists them.

// Results of a handler call, the result label of the SDK's metrics.
const (
	resultOK    = "ok"
	resultError = "error"
)

// rejectReasons are the reasons an event is terminated before any handler
// sees it (the reason label of plugbus_sdk_events_rejected_total).
var rejectReasons = []string{schemas.ReasonMalformed, schemas.ReasonUntrusted, schemas.ReasonInvalidData, schemas.ReasonUnhandled}

var (
	descRejected = prometheus.NewDesc("plugbus_sdk_events_rejected_total",
		"Events terminated before reaching a handler, by reason (malformed_event, untrusted_event, invalid_data, unhandled_type); the broker dead-letters them.",
		[]string{"reason"}, nil)
	descTerminated = prometheus.NewDesc("plugbus_sdk_events_terminated_total",
		"Events this instance terminated (rejected ones, permanent failures, failures on the last delivery); the broker dead-letters them.",
		nil, nil)
)

// sdkMetrics are a plugin instance's metrics.
type sdkMetrics struct {
	reg      *prometheus.Registry
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// series caches the series of each kind and name, so observing a
	// call allocates nothing.
	mu     sync.RWMutex
	series map[string]map[string]*callSeries
}

// callSeries are the series of one kind and name of handler call.
type callSeries struct {
	ok, failed prometheus.Counter
	duration   prometheus.Observer
}

func newSDKMetrics(p *Plugin) *sdkMetrics {
	m := p.manifest
	sm := &sdkMetrics{
		reg:    prometheus.NewRegistry(),
		series: map[string]map[string]*callSeries{},
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_sdk_handler_calls_total",
			Help: "Handler calls of this plugin instance, by kind (init, config, verify, action, hook, event), name (the verb, action command, hook point or event type) and result (ok, error).",
		}, []string{"kind", "name", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "plugbus_sdk_handler_duration_seconds",
			Help:    "Handler run time of this plugin instance (middleware included), by kind and name.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"kind", "name"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "plugbus_sdk_build_info",
		Help: "Always 1; the labels say which plugin version and plugbus SDK this instance runs.",
	}, []string{"version", "plugbus_version"})
	info.WithLabelValues(m.Version, version.Release).Set(1)
	own := prometheus.WrapRegistererWith(prometheus.Labels{"plugin": m.Name}, sm.reg)
	own.MustRegister(sm.calls, sm.duration, info, statsCollector{p})
	sm.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Every name the manifest declares, at 0 from the start.
	known := map[string][]string{
		KindInit: {schemas.VerbInit}, KindConfig: {schemas.VerbConfig}, KindVerify: {schemas.VerbVerify},
	}
	for _, a := range m.Actions {
		known[KindAction] = append(known[KindAction], a.Command)
	}
	for _, h := range m.Hooks {
		known[KindHook] = append(known[KindHook], h.Hook)
	}
	if m.Events != nil {
		for _, t := range m.Events.Types {
			if !strings.Contains(t, "*") {
				known[KindEvent] = append(known[KindEvent], t)
			}
		}
	}
	for kind, names := range known {
		for _, n := range names {
			sm.lookup(kind, n)
		}
	}
	return sm
}

// lookup returns (creating them the first time) the series of a kind and
// name of call.
func (sm *sdkMetrics) lookup(kind, name string) *callSeries {
	sm.mu.RLock()
	s := sm.series[kind][name]
	sm.mu.RUnlock()
	if s != nil {
		return s
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if s = sm.series[kind][name]; s == nil {
		s = &callSeries{ok: sm.calls.WithLabelValues(kind, name, resultOK), failed: sm.calls.WithLabelValues(kind, name, resultError),
			duration: sm.duration.WithLabelValues(kind, name)}
		if sm.series[kind] == nil {
			sm.series[kind] = map[string]*callSeries{}
		}
		sm.series[kind][name] = s
	}
	return s
}

// observe counts and times one handler call (invoke calls it for every
// one, middleware included; a panic arrives as an error).
func (sm *sdkMetrics) observe(kind, name string, err error, d time.Duration) {
	s := sm.lookup(kind, name)
	if err != nil {
		s.failed.Inc()
	} else {
		s.ok.Inc()
	}
	s.duration.Observe(d.Seconds())
}

// statsCollector reports the Stats counters that no handler call covers.
type statsCollector struct{ p *Plugin }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRejected
	ch <- descTerminated
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	for _, r := range rejectReasons {
		var v uint64
		switch r {
		case schemas.ReasonMalformed:
			v = st.EventsMalformed
		case schemas.ReasonUntrusted:
			v = st.EventsUntrusted
		case schemas.ReasonInvalidData:
			v = st.EventsInvalid
		case schemas.ReasonUnhandled:
			v = st.EventsUnhandled
		}
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(v), r)
	}
	ch <- prometheus.MustNewConstMetric(descTerminated, prometheus.CounterValue, float64(st.EventsTerminated))
}

// MetricsRegistry returns the instance's Prometheus registry: the SDK's
// metrics (plugbus_sdk_*), the Go runtime's and the process's. Register
// the plugin's own metrics on it to have them served alongside.
func (p *Plugin) MetricsRegistry() *prometheus.Registry { return p.metrics.reg }

// MetricsHandler serves the instance's metrics in the Prometheus text
// format, or OpenMetrics when the scraper asks for it. sdk.Main serves it
// on --metrics-addr; mount it on a server of your own otherwise.
func (p *Plugin) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// EnvMetricsAddr is the environment variable sdk.Main's --metrics-addr
// defaults to.
const EnvMetricsAddr = "PLUGBUS_METRICS_ADDR"

// serveMetrics serves p's metrics at /metrics on addr until ctx ends or
// the returned stop is called.
func serveMetrics(ctx context.Context, p *Plugin, addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w (choose another address)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.Logger().Error().Err(err).Str(logging.FieldHTTPAddr, ln.Addr().String()).Msg("metrics server failed")
		}
	}()
	p.Logger().Info().Str(logging.FieldHTTPAddr, ln.Addr().String()).Msg("serving metrics at /metrics")
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }, nil
}
