package wire

// This file is who may say what on the event subjects: the broker
// publishes every core event, a plugin only its own events below
// PluginEventSubject. The server's permissions enforce the subjects;
// CheckOrigin makes sure an event's claims (its type and source) agree
// with the subject it arrived on, which is all the server checked.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
)

// BrokerSource is the source of every core event.
const BrokerSource = "/plugbus/broker"

// PluginSource returns the source of a plugin's own events:
// "/plugbus/plugins/NAME".
func PluginSource(plugin string) string { return "/plugbus/plugins/" + plugin }

// PluginEventType returns the type of a plugin's own event:
// ("incrementer", "counter.v1.changed") -> "io.plugbus.plugin.incrementer.counter.v1.changed",
// published on "PREFIX.evt.plugin.incrementer.counter.v1.changed".
func PluginEventType(plugin, name string) string {
	return schemas.TypePrefix + "plugin." + plugin + "." + name
}

// ErrUntrustedEvent is wrapped by CheckOrigin when an event claims a type
// or source its subject does not allow.
var ErrUntrustedEvent = errors.New("untrusted event")

// CheckOrigin reports whether event e, received on subject of a bus with
// this prefix, says what its subject allows: its type is the one the
// subject carries, and its source is the broker's on core subjects and
// the plugin's on PREFIX.evt.plugin.NAME.… . An error wraps
// ErrUntrustedEvent and names the mismatch.
func CheckOrigin(prefix, subject string, e *event.Event) error {
	rest, ok := strings.CutPrefix(subject, prefix+".evt.")
	if !ok {
		return fmt.Errorf("%w: subject %s is not an event subject of bus %s", ErrUntrustedEvent, subject, prefix)
	}
	if want := schemas.TypePrefix + rest; e.Type() != want {
		return fmt.Errorf("%w: event %s claims type %s but arrived on %s, which carries %s", ErrUntrustedEvent, e.ID(), e.Type(), subject, want)
	}
	source, who := BrokerSource, "the broker"
	if name, ok := pluginOfEvent(rest); ok {
		source, who = PluginSource(name), "plugin "+name
	}
	if e.Source() != source {
		return fmt.Errorf("%w: event %s claims source %s but arrived on %s, where only %s publishes (source %s)", ErrUntrustedEvent, e.ID(), e.Source(), subject, who, source)
	}
	return nil
}

// pluginOfEvent returns the plugin whose own event subject rest (the
// subject after PREFIX.evt.) is. plugin.v1.… is the core's plugin
// lifecycle: plugin names like v1 are reserved for it.
func pluginOfEvent(rest string) (string, bool) {
	after, ok := strings.CutPrefix(rest, "plugin.")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(after, ".")
	if isVersionToken(name) {
		return "", false
	}
	return name, true
}

// isVersionToken reports whether s is v followed by digits.
func isVersionToken(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
