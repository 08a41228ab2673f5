package wire

import "testing"

func TestRedeliverySubject(t *testing.T) {
	tests := []struct {
		subject, want string
		ok            bool
	}{
		{"plugbus.evt.alert.v1.fired", "plugbus.evt.redeliver.plugin_a.alert.v1.fired", true},
		{"plugbus.evt.plugin.inc.counter.v1.changed", "plugbus.evt.redeliver.plugin_a.plugin.inc.counter.v1.changed", true},
		// A redelivery replayed again goes back to the original's subject.
		{"plugbus.evt.redeliver.plugin_b.alert.v1.fired", "plugbus.evt.redeliver.plugin_a.alert.v1.fired", true},
		{"acme.evt.alert.v1.fired", "", false},
		{"plugbus.evt.", "", false},
		{"plugbus.dlq.plugin_a", "", false},
	}
	for _, tt := range tests {
		got, ok := RedeliverySubject("plugbus", "plugin_a", tt.subject)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RedeliverySubject(%q) = %q, %v; want %q, %v", tt.subject, got, ok, tt.want, tt.ok)
		}
		if !ok {
			continue
		}
		cons, orig, isRe := RedeliveryOf("plugbus", got)
		if !isRe || cons != "plugin_a" {
			t.Errorf("RedeliveryOf(%q) = %q, %q, %v", got, cons, orig, isRe)
		}
		if _, o, _ := RedeliveryOf("plugbus", tt.subject); o != "" && o != orig {
			t.Errorf("original of %q is %q, of its redelivery %q", tt.subject, o, orig)
		}
	}
	for _, s := range []string{"plugbus.evt.alert.v1.fired", "plugbus.evt.redeliver", "plugbus.evt.redeliver.plugin_a", "plugbus.evt.redeliver..x", "acme.evt.redeliver.c.alert.v1.fired"} {
		if c, o, ok := RedeliveryOf("plugbus", s); ok {
			t.Errorf("RedeliveryOf(%q) = %q, %q, true", s, c, o)
		}
	}
	if got := RedeliverySubjects("plugbus", "plugin_a"); got != "plugbus.evt.redeliver.plugin_a.>" {
		t.Errorf("RedeliverySubjects = %q", got)
	}
}
