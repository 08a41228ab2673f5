package wire

import "strings"

// Redelivery subjects carry an event again to one consumer only: a dead
// letter replayed (busctl dlq replay) goes back to the plugin that gave up
// on it, and to no other plugin. Every plugin's durable consumer filters
// on its own redelivery subjects (RedeliverySubjects) besides its event
// types; the event keeps its id, type, source and data.
//
//	PREFIX.evt.redeliver.CONSUMER.REST
//
// where PREFIX.evt.REST is the subject the event was first published on
// (its type's subject). Only the broker publishes there: "redeliver" is
// reserved as the first token after PREFIX.evt. (no core event type and
// no plugin event lives below it).

// redeliverToken is the token after PREFIX.evt. of every redelivery
// subject.
const redeliverToken = "redeliver"

// RedeliverySubject returns the subject that carries the event first
// published on subject (an event subject of the bus) again to consumer
// alone: ("plugbus", "plugin_notify-webhook", "plugbus.evt.alert.v1.fired")
// -> "plugbus.evt.redeliver.plugin_notify-webhook.alert.v1.fired". A
// redelivery subject is mapped to its original first, so redeliveries do
// not nest. ok is false when subject is not an event subject of the bus.
func RedeliverySubject(prefix, consumer, subject string) (string, bool) {
	if _, orig, isRe := RedeliveryOf(prefix, subject); isRe {
		subject = orig
	}
	rest, ok := strings.CutPrefix(subject, prefix+".evt.")
	if !ok || rest == "" {
		return "", false
	}
	return prefix + ".evt." + redeliverToken + "." + consumer + "." + rest, true
}

// RedeliverySubjects is the subject filter of every redelivery to
// consumer: "PREFIX.evt.redeliver.CONSUMER.>".
func RedeliverySubjects(prefix, consumer string) string {
	return prefix + ".evt." + redeliverToken + "." + consumer + ".>"
}

// RedeliveryOf reports whether subject is a redelivery subject of the bus,
// and then to which consumer and what the event's original subject is
// (the one wire.CheckOrigin checks the event against).
func RedeliveryOf(prefix, subject string) (consumer, original string, ok bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".evt."+redeliverToken+".")
	if !ok {
		return "", "", false
	}
	consumer, rest, ok = strings.Cut(rest, ".")
	if !ok || consumer == "" || rest == "" {
		return "", "", false
	}
	return consumer, prefix + ".evt." + rest, true
}
