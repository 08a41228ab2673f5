package busctl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
)

// seedEvents creates PLUGBUS_EVENTS and publishes, in this order (stream
// sequences 1..14): j1 a1 j2 a2 j3 a3 j4 a4 BAD a5 j5 d1 j6 j7, where jN
// are job.v1.deployed events, aN alert.v1.fired, d1 job.v1.deleted and BAD a
// malformed message (no CloudEvent headers) on the job.v1.deployed subject.
func seedEvents(t *testing.T, b *bus) {
	t.Helper()
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	j, a := 0, 0
	for i := 1; i <= 14; i++ {
		switch {
		case i == 9:
			if _, err := b.js.Publish(context.Background(), "plugbus.evt.job.v1.deployed", []byte("not an event")); err != nil {
				t.Fatal(err)
			}
		case i == 12:
			b.publishEvent(t, newEvent(t, "d1", schemas.TypeJobDeleted, schemas.JobDeletedData{Name: "web", Version: "1"}))
		case i%2 == 1 || a == 5:
			j++
			b.publishEvent(t, newEvent(t, fmt.Sprintf("j%d", j), schemas.TypeJobDeployed,
				schemas.JobDeployedData{Name: "web", Version: fmt.Sprint(j), Image: "nginx"}))
		default:
			a++
			b.publishEvent(t, newEvent(t, fmt.Sprintf("a%d", a), schemas.TypeAlertFired,
				schemas.Alert{ID: fmt.Sprintf("a%d", a), Severity: "info", Summary: "s", Status: "firing"}))
		}
	}
}

// jsonEvents decodes -o json output: every line must be a CloudEvent.
func jsonEvents(t *testing.T, out string) []event.Event {
	t.Helper()
	var evs []event.Event
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e event.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q is not a CloudEvent: %v", sc.Text(), err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("line %q is not a valid CloudEvent: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

func ids(evs []event.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.ID())
	}
	return strings.Join(s, ",")
}

func TestEventsTail(t *testing.T) {
	b := startBus(t)
	seedEvents(t, b)

	tests := []struct {
		name string
		args []string
		want string // ids, oldest first
	}{
		{"last 3 of a type", []string{"--type", schemas.TypeJobDeployed, "--count", "3"}, "j5,j6,j7"},
		{"last 1 of a type", []string{"--type", schemas.TypeAlertFired, "-n", "1"}, "a5"},
		{"all of a type when count exceeds", []string{"--type", schemas.TypeAlertFired, "--count", "50"}, "a1,a2,a3,a4,a5"},
		{"pattern", []string{"--type", "io.plugbus.job.v1.*", "--count", "3"}, "d1,j6,j7"},
		{"all types", []string{"--count", "4"}, "j5,d1,j6,j7"},
		// The 10 last messages include the malformed one (reported on stderr).
		{"default count is 10", nil, "j3,a3,j4,a4,a5,j5,d1,j6,j7"},
		{"type with no events", []string{"--type", schemas.TypeMachineActionCompleted}, ""},
		{"count 0", []string{"--count", "0"}, ""},
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

	t.Run("malformed message is reported, not skipped", func(t *testing.T) {
		// The malformed message is the 4th last on job.v1.deployed.
		r := b.busctl(t, "events", "tail", "--type", schemas.TypeJobDeployed, "--count", "4", "-o", "json")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if got := ids(jsonEvents(t, r.stdout)); got != "j5,j6,j7" {
			t.Errorf("events = %s, want j5,j6,j7", got)
		}
		if !strings.Contains(r.stderr, "malformed event at stream seq 9") {
			t.Errorf("stderr does not report the malformed message at seq 9:\n%s", r.stderr)
		}

		out := b.mustRun(t, "events", "tail", "--type", schemas.TypeJobDeployed, "--count", "4")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 {
			t.Fatalf("want header + 4 rows, got:\n%s", out)
		}
		if !strings.Contains(lines[1], "MALFORMED") || !strings.Contains(lines[1], "stream seq 9") {
			t.Errorf("row 1 does not flag the malformed message: %q", lines[1])
		}
	})

	t.Run("table", func(t *testing.T) {
		out := b.mustRun(t, "events", "tail", "--type", schemas.TypeJobDeployed, "--count", "2")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("want header + 2 rows, got:\n%s", out)
		}
		for _, col := range []string{"TIME", "TYPE", "SUBJECT", "ID", "SUMMARY"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header %q lacks %s", lines[0], col)
			}
		}
		for i, id := range []string{"j6", "j7"} {
			f := strings.Fields(lines[i+1])
			if len(f) < 5 || f[0] != "2025-05-01T12:00:00Z" || f[1] != schemas.TypeJobDeployed ||
				f[2] != "plugbus.evt.job.v1.deployed" || f[3] != id {
				t.Errorf("row %d = %q, want time, type, subject, %s, data", i+1, lines[i+1], id)
			}
			if want := fmt.Sprintf("web v%s nginx", id[1:]); !strings.HasSuffix(lines[i+1], want) {
				t.Errorf("row %d lacks the summary %q: %q", i+1, want, lines[i+1])
			}
		}
		// Columns line up: ID starts at the same offset on every line.
		off := strings.Index(lines[0], "ID")
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l[off:], "j") {
				t.Errorf("ID column misaligned in %q (header offset %d)", l, off)
			}
		}
	})

	t.Run("json keeps every attribute", func(t *testing.T) {
		evs := jsonEvents(t, b.mustRun(t, "events", "tail", "--type", schemas.TypeJobDeployed, "-n", "1", "-o", "json"))
		if len(evs) != 1 {
			t.Fatalf("got %d events", len(evs))
		}
		e := evs[0]
		if e.Source() != "/plugbus/broker" || e.DataSchema() != schemas.EventSchemaID(schemas.TypeJobDeployed) ||
			e.DataContentType() != event.ApplicationJSON || e.SpecVersion() != "1.0" {
			t.Errorf("attributes lost: %s", e)
		}
		var d schemas.JobDeployedData
		if err := e.DataAs(&d); err != nil || d.Version != "7" {
			t.Errorf("data = %+v, %v", d, err)
		}
	})

	t.Run("leaves no consumer behind", func(t *testing.T) {
		s, err := b.js.Stream(context.Background(), schemas.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers != 0 {
			t.Errorf("%d consumers left on the stream", info.State.Consumers)
		}
	})
}

func TestEventsTailBadInput(t *testing.T) {
	b := startBus(t)
	for name, args := range map[string][]string{
		"negative count":  {"--count", "-1"},
		"empty token":     {"--type", "io.plugbus..x"},
		"glued wildcard":  {"--type", "io.plugbus.job.v1.dep*"},
		"positional args": {"extra"},
	} {
		t.Run(name, func(t *testing.T) {
			r := b.busctl(t, append([]string{"events", "tail"}, args...)...)
			if r.code != busctl.ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, busctl.ExitUsage, r.stderr)
			}
		})
	}
	t.Run("no broker", func(t *testing.T) {
		// busctl reads the streams through the broker (streams.read).
		r := b.busctl(t, "--timeout", "1s", "events", "tail")
		if r.code != busctl.ExitError || !strings.Contains(r.stderr, "error: no_responders: nothing answers on plugbus.api.streams.read") ||
			!strings.Contains(r.stderr, "hint: start the broker with `make run`") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
}

func TestEventsTailFollow(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	for i := 1; i <= 3; i++ {
		b.publishEvent(t, newEvent(t, fmt.Sprintf("old%d", i), schemas.TypeJobDeployed, map[string]int{"i": i}))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- busctl.Execute(ctx, []string{"-s", b.url, "events", "tail", "--follow", "--count", "2",
			"--type", schemas.TypeJobDeployed, "-o", "json"}, &out, &errOut)
	}()
	waitFor(t, "the last 2 events", func() bool { return strings.Count(out.String(), "\n") == 2 })
	b.publishEvent(t, newEvent(t, "other", schemas.TypeAlertFired, map[string]int{"i": 0}))
	b.publishEvent(t, newEvent(t, "new1", schemas.TypeJobDeployed, map[string]int{"i": 4}))
	waitFor(t, "the new event", func() bool { return strings.Count(out.String(), "\n") == 3 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after Ctrl-C, stderr:\n%s", code, errOut.String())
	}
	if got := ids(jsonEvents(t, out.String())); got != "old2,old3,new1" {
		t.Errorf("events = %s, want old2,old3,new1", got)
	}
	info, err := b.js.Stream(context.Background(), schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("%d consumers left on the stream", n)
	}
}

func TestEventsTailFollowTable(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- busctl.Execute(ctx, []string{"-s", b.url, "events", "tail", "-f"}, &out, &errOut)
	}()
	waitFor(t, "the header", func() bool { return strings.Contains(out.String(), "SUMMARY") })
	b.publishEvent(t, newEvent(t, "e1", schemas.TypeAlertFired, map[string]int{"i": 1}))
	waitFor(t, "the row", func() bool { return strings.Contains(out.String(), "e1") })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if off := strings.Index(lines[0], "ID"); !strings.HasPrefix(lines[1][off:], "e1") {
		t.Errorf("streamed row misaligned:\n%s", out.String())
	}
}

func TestEventsDLQ(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamDLQ, "plugbus.dlq.>")
	for i := 1; i <= 3; i++ {
		e := newEvent(t, fmt.Sprintf("ev%d", i), schemas.TypeJobDeployed, map[string]int{"i": i})
		msg, err := encodeDLQ(e, i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}

	out := b.mustRun(t, "events", "dlq", "--count", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header + 2 rows, got:\n%s", out)
	}
	for _, col := range []string{"TIME", "SEQ", "TYPE", "ID", "CONSUMER", "STREAM-SEQ", "DELIVERIES", "REASON"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header %q lacks %s", lines[0], col)
		}
	}
	for i, n := range []int{2, 3} {
		f := strings.Fields(lines[i+1])
		if f[0] != fmt.Sprintf("2025-05-01T12:0%d:00Z", n) {
			t.Errorf("row %d time = %s, want the plugbus-dlq-time header", i+1, f[0])
		}
		want := []string{fmt.Sprint(n), schemas.TypeJobDeployed, fmt.Sprintf("ev%d", n), "plugin_incrementer",
			fmt.Sprint(100 + n), "5", "handler", "failed:", fmt.Sprintf("boom%d", n)}
		if strings.Join(f[1:], " ") != strings.Join(want, " ") {
			t.Errorf("row %d = %q, want … %s", i+1, lines[i+1], strings.Join(want, " "))
		}
	}

	r := b.busctl(t, "events", "dlq", "-n", "1", "-o", "json")
	var d struct {
		Seq        uint64            `json:"seq"`
		Reason     string            `json:"reason"`
		Cause      string            `json:"cause"`
		Consumer   string            `json:"consumer"`
		StreamSeq  uint64            `json:"stream_seq"`
		Deliveries uint64            `json:"deliveries"`
		Headers    map[string]string `json:"headers"`
		Event      *event.Event      `json:"event"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("dlq -o json: %v\n%s", err, r.stdout)
	}
	if d.Seq != 3 || d.Reason != "handler failed: boom3" || d.Cause != "max_deliveries" || d.Consumer != "plugin_incrementer" || d.StreamSeq != 103 ||
		d.Deliveries != 5 || d.Headers["ce-id"] != "ev3" || d.Event == nil || d.Event.ID() != "ev3" {
		t.Errorf("dead letter = %+v", d)
	}
}

// encodeDLQ builds a dead letter as the broker does: the original event's
// message with the plugbus-dlq-* headers added.
func encodeDLQ(e *event.Event, i int) (*nats.Msg, error) {
	msg, err := cenatsEncode(e, "plugbus.dlq.plugin_incrementer")
	if err != nil {
		return nil, err
	}
	msg.Header.Set(schemas.HeaderDLQReason, fmt.Sprintf("handler failed: boom%d", i))
	msg.Header.Set(schemas.HeaderDLQConsumer, "plugin_incrementer")
	msg.Header.Set(schemas.HeaderDLQStreamSeq, fmt.Sprint(100+i))
	msg.Header.Set(schemas.HeaderDLQDeliveries, "5")
	msg.Header.Set(schemas.HeaderDLQCause, "max_deliveries")
	msg.Header.Set(schemas.HeaderDLQTime, fmt.Sprintf("2025-05-01T12:0%d:00Z", i))
	return msg, nil
}

// TestEventsTailSummary checks the SUBJECT and SUMMARY columns: the
// CloudEvent subject when the event has one, else the NATS subject; a few
// words for core event types, else the data as compact JSON.
func TestEventsTailSummary(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	withSubject := func(e *event.Event, s string) *event.Event { e.SetSubject(s); return e }
	events := []struct {
		e                *event.Event
		subject, summary string
	}{
		{withSubject(newEvent(t, "e1", schemas.TypeJobDeployed,
			schemas.JobDeployedData{Name: "demo", Version: "1", Image: "nginx", Env: map[string]string{"A": "1"}}), "job/demo"),
			"job/demo", "demo v1 nginx"},
		{withSubject(newEvent(t, "e2", schemas.TypeJobDeleted,
			schemas.JobDeletedData{Name: "demo", Version: "v2"}), "job/demo"),
			"job/demo", "demo v2"},
		{withSubject(newEvent(t, "e3", schemas.TypeMachineActionRequested,
			schemas.MachineActionRequestedData{ActionID: "x", Machine: "m1", Command: "increment", Plugin: "incrementer"}), "machine/m1"),
			"machine/m1", "m1 increment via incrementer"},
		{withSubject(newEvent(t, "e4", schemas.TypeMachineActionCompleted,
			schemas.MachineActionCompletedData{ActionID: "x", Machine: "m1", Command: "increment", Plugin: "incrementer",
				Status: schemas.ActionSucceeded, DurationMs: 1.5}), "machine/m1"),
			"machine/m1", "m1 increment → succeeded"},
		{withSubject(newEvent(t, "e5", schemas.TypeMachineActionCompleted,
			schemas.MachineActionCompletedData{ActionID: "y", Machine: "m1", Command: "reset_count", Status: schemas.ActionFailed,
				Error: &schemas.Error{Code: "plugin_error", Message: "boom"}}), "machine/m1"),
			"machine/m1", "m1 reset_count → failed: plugin_error: boom"},
		{withSubject(newEvent(t, "e5p", schemas.TypeMachineActionProgress,
			schemas.MachineActionProgressData{ActionID: "z", Machine: "m1", Command: "firmware-update", Plugin: "incrementer",
				Percent: 45, Message: "flashed block 9 of 20", Seq: 9}), "machine/m1"),
			"machine/m1", "m1 firmware-update 45% flashed block 9 of 20"},
		{withSubject(newEvent(t, "e6", schemas.TypeAlertFired,
			schemas.Alert{ID: "a1", Severity: "critical", Summary: "disk full", Status: "firing"}), "alert/a1"),
			"alert/a1", "critical disk full"},
		{withSubject(newEvent(t, "e7", schemas.TypePluginStateChanged,
			schemas.PluginStateChangedData{Name: "incrementer", Version: "1.0.0", From: schemas.StateError, To: schemas.StateActive}), "plugin/incrementer"),
			"plugin/incrementer", "incrementer ERROR→ACTIVE"},
		{withSubject(newEvent(t, "e8", schemas.TypePluginRegistered,
			schemas.PluginRegisteredData{Name: "incrementer", Version: "1.1.0", PreviousVersion: "1.0.0"}), "plugin/incrementer"),
			"plugin/incrementer", "incrementer 1.1.0 (was 1.0.0)"},
		{withSubject(newEvent(t, "e9", schemas.TypeHookChainCompleted,
			schemas.ChainRecord{ID: "c1", Hook: schemas.HookJobPreDeploy, Object: "job/web", Outcome: schemas.ChainCompleted,
				Steps: []schemas.StepRecord{{Plugin: "job-policy"}}}), "job/web"),
			"job/web", "job.pre_deploy job/web completed (1 step)"},
		// No CloudEvent subject: the NATS subject.
		{newEvent(t, "e10", schemas.TypeAlertResolved, schemas.Alert{ID: "a1", Severity: "info", Summary: "ok", Status: "resolved"}),
			"plugbus.evt.alert.v1.resolved", "info ok"},
		// Data that does not fit the core type: the data itself.
		{newEvent(t, "e11", schemas.TypeJobDeployed, map[string]int{"i": 1}), "plugbus.evt.job.v1.deployed", `{"i":1}`},
		{newEvent(t, "e12", schemas.TypeJobDeployed, map[string]string{"long": strings.Repeat("x", 80)}),
			"plugbus.evt.job.v1.deployed", `{"long":"` + strings.Repeat("x", 60-len(`{"long":"`)-1) + "…"},
	}
	for _, ev := range events {
		b.publishEvent(t, ev.e)
	}
	out := b.mustRun(t, "events", "tail", "-n", fmt.Sprint(len(events)))
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(events)+1 {
		t.Fatalf("want header + %d rows, got:\n%s", len(events), out)
	}
	cols := regexp.MustCompile(`\s{2,}`)
	for i, ev := range events {
		f := cols.Split(lines[i+1], -1)
		if len(f) != 5 {
			t.Errorf("row %d = %q: want 5 columns", i+1, lines[i+1])
			continue
		}
		if f[2] != ev.subject || f[3] != ev.e.ID() || f[4] != ev.summary {
			t.Errorf("row %d: SUBJECT %q, ID %q, SUMMARY %q; want %q, %q, %q", i+1, f[2], f[3], f[4], ev.subject, ev.e.ID(), ev.summary)
		}
	}
}
