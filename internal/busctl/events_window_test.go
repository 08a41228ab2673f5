package busctl_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.yaml.in/yaml/v3"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
)

// yamlEvents decodes -o yaml output of a stream reader: one YAML document
// per CloudEvent, with the CloudEvents JSON field names.
func yamlEvents(t *testing.T, out string) []event.Event {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(out))
	var evs []event.Event
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not YAML: %v\n%s", err, out)
		}
		e := event.New()
		e.SetID(fmt.Sprint(doc["id"]))
		e.SetType(fmt.Sprint(doc["type"]))
		e.SetSource(fmt.Sprint(doc["source"]))
		if doc["specversion"] != "1.0" {
			t.Fatalf("document without specversion 1.0: %v", doc)
		}
		evs = append(evs, e)
	}
	return evs
}

// --from-seq starts at a stream sequence (the first N from there),
// --since at a time (every event since, or the last N of them), --all
// takes the whole window; -o yaml prints one document per event.
func TestEventsTailWindow(t *testing.T) {
	b := startBus(t)
	seedEvents(t, b)

	r := b.busctl(t, "events", "tail", "--from-seq", "1", "--count", "5", "-o", "yaml")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := ids(yamlEvents(t, r.stdout)); got != "j1,a1,j2,a2,j3" {
		t.Errorf("--from-seq 1 --count 5 -o yaml: %s, want the first five events\n%s", got, r.stdout)
	}
	if !strings.HasPrefix(r.stdout, "---\nspecversion: \"1.0\"\nid: j1\n") {
		t.Errorf("YAML does not keep the CloudEvents field names and order:\n%s", r.stdout)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"from seq, count", []string{"--from-seq", "3", "-n", "2"}, "j2,a2"},
		{"from seq, no count: every one from there", []string{"--from-seq", "12"}, "d1,j6,j7"},
		{"from seq with a type", []string{"--from-seq", "1", "--type", schemas.TypeAlertFired, "-n", "2"}, "a1,a2"},
		{"from seq past the end", []string{"--from-seq", "100"}, ""},
		{"all of a type", []string{"--all", "--type", schemas.TypeAlertFired}, "a1,a2,a3,a4,a5"},
		{"since a duration: every one since", []string{"--since", "1h", "--type", schemas.TypeAlertFired}, "a1,a2,a3,a4,a5"},
		{"since, count: the last N since", []string{"--since", "1h", "-n", "3"}, "d1,j6,j7"},
		{"since a time to come", []string{"--since", "2099-01-01T00:00:00Z"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.busctl(t, append([]string{"events", "tail", "-o", "json"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := ids(jsonEvents(t, r.stdout)); got != tt.want {
				t.Errorf("events = %s, want %s", got, tt.want)
			}
		})
	}

	// The malformed message at 9 is a row of the table.
	out := b.mustRun(t, "events", "tail", "--from-seq", "9", "-n", "3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.Contains(lines[1], "MALFORMED") ||
		!strings.Contains(lines[2], "a5") || !strings.Contains(lines[3], "j5") {
		t.Errorf("--from-seq 9 -n 3:\n%s", out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "1h", "--from-seq", "1"}, "--since and --from-seq both say where to start"},
		{[]string{"--all", "--count", "3"}, "--all and --count both say how many"},
		{[]string{"--from-seq", "0"}, "--from-seq must be 1 or more"},
		{[]string{"--from-seq", "-1"}, `invalid value "-1" for --from-seq: must be a whole number`},
		{[]string{"--since", "yesterday"}, `invalid --since "yesterday"`},
		{[]string{"--subject", "job/["}, `invalid --subject "job/["`},
	} {
		r := b.busctl(t, append([]string{"events", "tail"}, tt.args...)...)
		if r.code != busctl.ExitUsage || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "busctl events tail --help") {
			t.Errorf("events tail %v: exit %d\n%s", tt.args, r.code, r.stderr)
		}
	}
}

// --subject and --source keep the events whose CloudEvent attributes
// match (shell patterns), counting only those.
func TestEventsTailAttributes(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	for i, s := range []struct{ id, subject, source string }{
		{"e1", "job/web", "/plugbus/broker"}, {"e2", "job/db", "/plugbus/broker"}, {"e3", "machine/m1", "/plugbus/broker"},
		{"e4", "job/web", "/plugbus/broker"}, {"e5", "machine/m2", "/plugbus/broker"}, {"e6", "job/api", "/plugbus/broker"},
	} {
		e := newEvent(t, s.id, schemas.TypeJobDeployed, schemas.JobDeployedData{Name: "x", Version: fmt.Sprint(i), Image: "i"})
		e.SetSubject(s.subject)
		e.SetSource(s.source)
		b.publishEvent(t, e)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--subject", "job/*"}, "e1,e2,e4,e6"},
		{[]string{"--subject", "job/*", "-n", "2"}, "e4,e6"},
		{[]string{"--subject", "job/web", "--all"}, "e1,e4"},
		{[]string{"--subject", "machine/*", "--from-seq", "1", "-n", "1"}, "e3"},
		{[]string{"--subject", "job/*", "--from-seq", "2", "-n", "2"}, "e2,e4"},
		{[]string{"--subject", "job/*", "--since", "1h", "-n", "1"}, "e6"},
		{[]string{"--source", "/plugbus/plugins/*"}, ""},
		{[]string{"--source", "/plugbus/broker", "--subject", "machine/m2"}, "e5"},
		{[]string{"--subject", "job/*", "-n", "0"}, ""},
	}
	for _, tt := range tests {
		r := b.busctl(t, append([]string{"events", "tail", "-o", "json"}, tt.args...)...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, r.code, r.stderr)
		}
		if got := ids(jsonEvents(t, r.stdout)); got != tt.want {
			t.Errorf("%v: events = %s, want %s", tt.args, got, tt.want)
		}
	}
}

// events get shows one event by stream sequence or id; what is not there
// exits 1 saying what is.
func TestEventsGet(t *testing.T) {
	b := startBus(t)
	seedEvents(t, b)
	out := b.mustRun(t, "events", "get", "3")
	for _, want := range []string{"SEQ:", "3", "NATS SUBJECT:", "plugbus.evt.job.v1.deployed", "ID:", "j2", "TYPE:", schemas.TypeJobDeployed,
		"SUMMARY:", "web v2 nginx", `"image": "nginx"`} {
		if !strings.Contains(out, want) {
			t.Errorf("events get 3 lacks %q:\n%s", want, out)
		}
	}
	r := b.busctl(t, "events", "get", "a3", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if evs := jsonEvents(t, strings.Join(strings.Fields(r.stdout), "")); len(evs) != 1 || evs[0].ID() != "a3" {
		t.Errorf("events get a3 -o json:\n%s", r.stdout)
	}
	if out := b.mustRun(t, "events", "get", "9"); !strings.Contains(out, "MALFORMED:") || !strings.Contains(out, "not an event") {
		t.Errorf("events get 9 (malformed):\n%s", out)
	}
	r = b.busctl(t, "events", "get", "999")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "not_found") || !strings.Contains(r.stderr, "holds sequences 1 to 14") {
		t.Errorf("events get 999: exit %d\n%s", r.code, r.stderr)
	}
	r = b.busctl(t, "events", "get", "nope")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, `no event with id "nope"`) || !strings.Contains(r.stderr, "hint:") {
		t.Errorf("events get nope: exit %d\n%s", r.code, r.stderr)
	}
	if r := b.busctl(t, "events", "get", "0"); r.code != busctl.ExitUsage {
		t.Errorf("events get 0: exit %d\n%s", r.code, r.stderr)
	}
}

// Reading many events on a terminal shows a progress bar on stderr, and
// none with -o json or yaml, or when stdout is not a terminal.
func TestEventsTailProgress(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	for i := 0; i < 250; i++ {
		b.publishEvent(t, newEvent(t, fmt.Sprintf("e%d", i), schemas.TypeJobDeployed, schemas.JobDeployedData{Name: "x", Version: "1", Image: "i"}))
	}
	run := func(terminal bool, args ...string) result {
		t.Helper()
		defer busctl.SetTerminal(terminal)()
		return b.busctl(t, args...)
	}
	r := run(true, "events", "tail", "--all")
	if r.code != 0 || !strings.Contains(r.stderr, "reading events") || !strings.Contains(r.stderr, "250") {
		t.Errorf("on a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "\n"); n != 251 {
		t.Errorf("on a terminal: %d lines, want a header and 250 rows", n)
	}
	for _, tc := range []struct {
		terminal bool
		args     []string
	}{
		{true, []string{"events", "tail", "--all", "-o", "json"}},
		{true, []string{"events", "tail", "--all", "-o", "yaml"}},
		{false, []string{"events", "tail", "--all"}},
		{true, []string{"events", "tail", "-n", "10"}}, // too little to wait for
	} {
		r := run(tc.terminal, tc.args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%v (terminal %v): exit %d, stderr %q", tc.args, tc.terminal, r.code, r.stderr)
		}
	}
}
