package broker

import (
	"github.com/plugbus/plugbus/schemas"
)

// Pre-initialised series: every label combination /metrics can know in
// advance exists at 0 from the start, so Prometheus sees a counter's
// first increment (increase() and rate() need a sample before it). Label
// values that arrive with the traffic (plugin names) get their series when
// the broker first learns of them (pluginSeen).

// resultCodes are the values of a code or result label: ok, every
// documented error code and other.
func resultCodes() []string {
	out := append([]string{"ok"}, schemas.Codes...)
	return append(out, "other")
}

// badInputKinds are the kind label values of plugbus_bad_input_total.
var badInputKinds = []string{schemas.CodeBadRequest, schemas.CodeInvalidField, schemas.CodeMissingParam,
	schemas.CodeUnknownAction, schemas.CodeTooLarge, schemas.ReasonMalformed, schemas.ReasonInvalidData}

// pluginVerbs are the verb label values of plugbus_plugin_call_duration_seconds.
var pluginVerbs = []string{schemas.VerbInit, schemas.VerbConfig, schemas.VerbVerify, schemas.VerbAction}

// chainOutcomes are the outcome label values of plugbus_hook_chains_total.
var chainOutcomes = []string{schemas.ChainCompleted, schemas.ChainRejected, schemas.ChainFailed}

// stepOutcomes are the step outcomes a hook step's result label takes
// when the call itself did not fail (stepResult).
var stepOutcomes = []string{schemas.StepContinued, schemas.StepPatched, schemas.StepRejected}

// deadLetterCauses are the cause label values of plugbus_dead_letters_total.
var deadLetterCauses = []string{schemas.CauseMaxDeliveries, schemas.CauseTerminated}

// preinit creates the series known without a running broker.
func (m *metrics) preinit() {
	for _, t := range schemas.CoreEventTypes {
		m.eventsPublished.WithLabelValues(t)
		m.publishErrors.WithLabelValues(t)
	}
	for _, k := range badInputKinds {
		m.badInput.WithLabelValues(k)
	}
	for _, st := range pluginStates {
		m.stateChanges.WithLabelValues(string(st))
	}
	codes := resultCodes()
	for _, v := range pluginVerbs {
		for _, c := range codes {
			m.pluginCalls.WithLabelValues(v, c)
		}
	}
	for _, h := range schemas.HookPoints {
		for _, o := range chainOutcomes {
			m.hookChains.WithLabelValues(h, o)
		}
		for _, r := range append(append([]string(nil), stepOutcomes...), codes[1:]...) {
			m.hookSteps.WithLabelValues(h, r)
		}
	}
	for _, f := range intakeFormats {
		for _, c := range codes {
			m.intakeRequests.WithLabelValues(f, c)
		}
	}
	for _, s := range []string{intakeFiring, intakeResolved} {
		for _, r := range intakeResults {
			m.intakeAlerts.WithLabelValues(s, r)
		}
	}
}

// preinitAPI creates the request series of every API endpoint: each result
// code, plus replayed (a repeat answered from the idempotency cache).
func (m *metrics) preinitAPI(endpoints []apiEndpoint) {
	codes := append(resultCodes(), "replayed")
	for _, ep := range endpoints {
		m.apiDuration.WithLabelValues(ep.name)
		for _, c := range codes {
			m.apiRequests.WithLabelValues(ep.name, c)
		}
	}
}

// pluginSeen creates the series of a plugin the registry learned of: those
// of its event consumer, when it has one (a plugin that consumes no events
// never acks, naks or dead-letters, and a registry of thousands of plugins
// would otherwise hold as many series at 0).
func (m *metrics) pluginSeen(rec schemas.PluginRecord) {
	if rec.Consumer != "" {
		m.acked.WithLabelValues(rec.Name)
		m.nakked.WithLabelValues(rec.Name)
		for _, c := range deadLetterCauses {
			m.deadLetters.WithLabelValues(rec.Consumer, c)
		}
	}
}

// pluginGone drops the series of an unregistered plugin.
func (m *metrics) pluginGone(name string) {
	m.acked.DeleteLabelValues(name)
	m.nakked.DeleteLabelValues(name)
	for _, c := range deadLetterCauses {
		m.deadLetters.DeleteLabelValues(schemas.ConsumerName(name), c)
	}
}
