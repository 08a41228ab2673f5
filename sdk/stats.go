package sdk

import "sync/atomic"

// Stats counts what a plugin instance has done since it started.
type Stats struct {
	// EventsHandled counts events whose handler returned nil (acknowledged).
	EventsHandled uint64 `json:"events_handled"`
	// EventsFailed counts handler failures (each failed delivery once).
	EventsFailed uint64 `json:"events_failed"`
	// EventsMalformed counts messages that were not valid CloudEvents
	// (terminated without reaching a handler).
	EventsMalformed uint64 `json:"events_malformed"`
	// EventsUntrusted counts events whose type or source did not match
	// the subject they arrived on (terminated without reaching a handler:
	// see wire.CheckOrigin).
	EventsUntrusted uint64 `json:"events_untrusted"`
	// EventsInvalid counts events of a core type (schemas.CoreEventTypes)
	// whose data failed the type's JSON Schema: not JSON, empty, a field
	// missing or wrong. They are terminated without reaching a handler,
	// with the code invalid_data and the schema error as the reason, so
	// the broker dead-letters them. A plugin's own event types have no
	// schema and are not checked.
	EventsInvalid uint64 `json:"events_invalid"`
	// EventsUnhandled counts events of a type no handler matches
	// (terminated, so the broker dead-letters them).
	EventsUnhandled uint64 `json:"events_unhandled"`
	// EventsTerminated counts events the instance terminated: permanent
	// failures, failures on the last delivery, malformed, untrusted,
	// invalid and unhandled messages.
	EventsTerminated uint64 `json:"events_terminated"`
	// ActionsHandled counts action calls answered with a result.
	ActionsHandled uint64 `json:"actions_handled"`
	// ActionsFailed counts action calls answered with an error.
	ActionsFailed uint64 `json:"actions_failed"`
	// HooksHandled counts hook calls answered with a response (continue or
	// reject).
	HooksHandled uint64 `json:"hooks_handled"`
	// HooksRejected counts the hook calls answered with a rejection.
	HooksRejected uint64 `json:"hooks_rejected"`
	// HooksFailed counts hook calls answered with an error (a handler
	// error or panic, a bad request, a response the hook point cannot take).
	HooksFailed uint64 `json:"hooks_failed"`
	// ConfigsApplied counts configurations the config handler accepted.
	ConfigsApplied uint64 `json:"configs_applied"`
	// ConfigsRejected counts configurations the config handler rejected.
	ConfigsRejected uint64 `json:"configs_rejected"`
	// Registrations counts successful register requests (first and re-).
	Registrations uint64 `json:"registrations"`
	// OnceSkipped counts Once calls (OnceByEventID handlers included)
	// that did not run their function because its key was already done.
	OnceSkipped uint64 `json:"once_skipped"`
}

type counters struct {
	eventsHandled, eventsFailed, eventsMalformed, eventsUntrusted, eventsInvalid, eventsUnhandled, eventsTerminated atomic.Uint64
	actionsHandled, actionsFailed                                                                                   atomic.Uint64
	hooksHandled, hooksRejected, hooksFailed                                                                        atomic.Uint64
	configsApplied, configsRejected                                                                                 atomic.Uint64
	registrations, onceSkipped                                                                                      atomic.Uint64
}

// Stats returns a snapshot of the instance's counters. (Requests, errors
// and processing time per endpoint are in `nats micro stats`.)
func (p *Plugin) Stats() Stats {
	c := &p.stats
	return Stats{
		EventsHandled:    c.eventsHandled.Load(),
		EventsFailed:     c.eventsFailed.Load(),
		EventsMalformed:  c.eventsMalformed.Load(),
		EventsUntrusted:  c.eventsUntrusted.Load(),
		EventsInvalid:    c.eventsInvalid.Load(),
		EventsUnhandled:  c.eventsUnhandled.Load(),
		EventsTerminated: c.eventsTerminated.Load(),
		ActionsHandled:   c.actionsHandled.Load(),
		ActionsFailed:    c.actionsFailed.Load(),
		HooksHandled:     c.hooksHandled.Load(),
		HooksRejected:    c.hooksRejected.Load(),
		HooksFailed:      c.hooksFailed.Load(),
		ConfigsApplied:   c.configsApplied.Load(),
		ConfigsRejected:  c.configsRejected.Load(),
		Registrations:    c.registrations.Load(),
		OnceSkipped:      c.onceSkipped.Load(),
	}
}
