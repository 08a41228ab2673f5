package broker

import (
	"github.com/plugbus/plugbus/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds the broker's Prometheus metrics in a registry of its own, so
// several brokers can live in one process (tests).
type metrics struct {
	reg             *prometheus.Registry
	eventsPublished *prometheus.CounterVec
	publishErrors   *prometheus.CounterVec
	apiRequests     *prometheus.CounterVec
	apiDuration     *prometheus.HistogramVec
	badInput        *prometheus.CounterVec
	deadLetters     *prometheus.CounterVec
	stateChanges    *prometheus.CounterVec
	pluginCalls     *prometheus.HistogramVec
	hookChains      *prometheus.CounterVec
	hookSteps       *prometheus.HistogramVec
	// acked and nakked count the acknowledgements and naks of each
	// plugin's consumer, from JetStream's advisories (metrics_delivery.go).
	acked, nakked *prometheus.CounterVec
	// intakeRequests and intakeAlerts count POST /v1/alerts (intake.go).
	intakeRequests *prometheus.CounterVec
	intakeAlerts   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		eventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_events_published_total", Help: "Core events published, by CloudEvent type.",
		}, []string{"type"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_event_publish_errors_total", Help: "Core events that failed to publish, by type.",
		}, []string{"type"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_api_requests_total", Help: "Broker API requests, by endpoint and result code (ok or an error code).",
		}, []string{"endpoint", "code"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plugbus_api_request_duration_seconds", Help: "Broker API request handling time.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"endpoint"}),
		badInput: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_bad_input_total", Help: "Rejected input, by kind (bad_request, invalid_field, missing_param, unknown_action, too_large, malformed_event, invalid_data).",
		}, []string{"kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_dead_letters_total", Help: "Events copied to the dead-letter stream, by consumer and cause (max_deliveries or terminated).",
		}, []string{"consumer", "cause"}),
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_plugin_state_changes_total", Help: "Plugin lifecycle transitions, by target state.",
		}, []string{"state"}),
		pluginCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plugbus_plugin_call_duration_seconds", Help: "Broker-to-plugin calls (init, config, verify, action), by verb and result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"verb", "result"}),
		hookChains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_hook_chains_total", Help: "Hook chain runs, by hook point and outcome (completed, rejected, failed).",
		}, []string{"hook", "outcome"}),
		hookSteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plugbus_hook_step_duration_seconds", Help: "Hook step calls, by hook point and result (step outcome or error code).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"hook", "result"}),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_consumer_acked_total", Help: "Events a plugin acknowledged (handled), from JetStream's ack advisories.",
		}, []string{"plugin"}),
		nakked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_consumer_nakked_total", Help: "Events a plugin gave back for redelivery (nak), from JetStream's nak advisories.",
		}, []string{"plugin"}),
		intakeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_alert_intake_requests_total", Help: "POST /v1/alerts requests, by payload format (alertmanager, plain, unknown) and result code (ok or an error code).",
		}, []string{"format", "code"}),
		intakeAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugbus_alert_intake_alerts_total", Help: "Alerts taken in by POST /v1/alerts, by status (firing, resolved) and result (fired, resolved, replayed, suppressed, unchanged, not_found, failed).",
		}, []string{"status", "result"}),
	}
	m.reg.MustRegister(m.eventsPublished, m.publishErrors, m.apiRequests, m.apiDuration, m.badInput,
		m.deadLetters, m.stateChanges, m.pluginCalls, m.hookChains, m.hookSteps, m.acked, m.nakked,
		m.intakeRequests, m.intakeAlerts, buildInfo(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.preinit()
	return m
}

// metricCode bounds the values of the code and result labels: a code
// outside the documented set (a plugin may answer any) counts as "other".
func metricCode(code string) string {
	if code == "ok" || schemas.IsCode(code) {
		return code
	}
	return "other"
}
