package busctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// plugins verify asks the plugin again: ready, it shows the plugin; not
// ready, it exits 1 with the plugin's reason and a hint, and the plugin is
// in ERROR until a verify finds it ready again.
func TestPluginsVerify(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(schemas.Manifest{Name: "checked", Version: "1.0.0", Description: "checks a database"}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	p.OnVerify(func(context.Context) error {
		if down.Load() {
			return errors.New("database unreachable")
		}
		return nil
	})
	bus.StartPlugin(t, p)

	if out := mustAt(t, bus, "plugins", "verify", "checked"); !strings.Contains(out, "STATE:") || !strings.Contains(out, "ACTIVE") {
		t.Errorf("verify of a ready plugin:\n%s", out)
	}
	down.Store(true)
	r := at(t, bus, "plugins", "verify", "checked")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "database unreachable") || !strings.Contains(r.stderr, "(plugin checked)") ||
		!strings.Contains(r.stderr, "hint: the plugin is in ERROR now") {
		t.Errorf("verify of a plugin that is not ready: exit %d\n%s", r.code, r.stderr)
	}
	if out := mustAt(t, bus, "plugins", "ls", "--state", "error"); !strings.Contains(out, "checked") {
		t.Errorf("after a failed verify:\n%s", out)
	}
	down.Store(false)
	var rec schemas.PluginRecord
	if err := json.Unmarshal([]byte(mustAt(t, bus, "plugins", "verify", "checked", "-o", "json")), &rec); err != nil ||
		rec.State != schemas.StateActive || rec.LastError != nil {
		t.Errorf("verify once ready again: %v %+v", err, rec)
	}
	r = at(t, bus, "plugins", "verify", "nope")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "not_found") || !strings.Contains(r.stderr, "busctl plugins ls") {
		t.Errorf("verify of an unknown plugin: exit %d\n%s", r.code, r.stderr)
	}
	if r := at(t, bus, "plugins", "verify"); r.code != busctl.ExitUsage || !strings.Contains(r.stderr, "missing NAME") {
		t.Errorf("verify without a name: exit %d\n%s", r.code, r.stderr)
	}
}

// alert ls and get, machine params: what they show, and their errors.
func TestAlertsAndParams(t *testing.T) {
	bus := plugintest.Start(t)
	mustAt(t, bus, "alert", "fire", "--severity", "critical", "--summary", "disk full", "--id", "disk", "--label", "host=h2")
	mustAt(t, bus, "alert", "fire", "--severity", "info", "--summary", "fyi", "--id", "fyi")
	mustAt(t, bus, "alert", "resolve", "fyi")

	out := mustAt(t, bus, "alert", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "disk ") || !strings.Contains(lines[1], "firing") || !strings.Contains(lines[1], "host=h2") ||
		!strings.HasPrefix(lines[2], "fyi ") || !strings.Contains(lines[2], "resolved") {
		t.Errorf("alert ls:\n%s", out)
	}
	if out := mustAt(t, bus, "alert", "ls", "--status", "resolved"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "fyi") {
		t.Errorf("alert ls --status resolved:\n%s", out)
	}
	if out := mustAt(t, bus, "alert", "get", "disk"); !strings.Contains(out, "SUMMARY:") || !strings.Contains(out, "disk full") || !strings.Contains(out, "RESOLVED:") {
		t.Errorf("alert get disk:\n%s", out)
	}
	r := at(t, bus, "alert", "get", "nope")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, `not_found: alert "nope" does not exist`) || !strings.Contains(r.stderr, "hint:") {
		t.Errorf("alert get nope: exit %d\n%s", r.code, r.stderr)
	}
	if r := at(t, bus, "alert", "ls", "--status", "burning"); r.code != busctl.ExitUsage || !strings.Contains(r.stderr, "firing, resolved, suppressed") {
		t.Errorf("alert ls --status burning: exit %d\n%s", r.code, r.stderr)
	}

	mustAt(t, bus, "machine", "set-param", "m1", "counter/step", "2")
	mustAt(t, bus, "machine", "set-param", "m1", "rack", "r12")
	if out := mustAt(t, bus, "machine", "params", "m1"); out != "PARAM         VALUE\ncounter/step  2\nrack          r12\n" {
		t.Errorf("machine params m1:\n%q", out)
	}
	if out := mustAt(t, bus, "machine", "params", "m1", "--plugin", "counter", "-o", "json"); !strings.Contains(out, `"counter/step": 2`) || strings.Contains(out, "rack") {
		t.Errorf("machine params m1 --plugin counter -o json:\n%s", out)
	}
	r = at(t, bus, "machine", "params", "m9")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "not_found") || !strings.Contains(r.stderr, "busctl machine ls") {
		t.Errorf("machine params m9: exit %d\n%s", r.code, r.stderr)
	}
}
