package busctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// at runs busctl against a plugintest bus.
func at(t *testing.T, bus *plugintest.Bus, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := busctl.Execute(context.Background(), append([]string{"--server", bus.URL()}, args...), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func mustAt(t *testing.T, bus *plugintest.Bus, args ...string) string {
	t.Helper()
	r := at(t, bus, args...)
	if r.code != 0 {
		t.Fatalf("busctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// alertSink is an SDK plugin handling alert.v1.fired: it gives up on
// every event for good (sdk.Permanent) until accept is set, and counts
// the events it handled by id.
type alertSink struct {
	accept atomic.Bool
	mu     sync.Mutex
	got    map[string]int
}

func startSink(t *testing.T, bus *plugintest.Bus, name string, accept bool) *alertSink {
	t.Helper()
	p, err := sdk.New(schemas.Manifest{Name: name, Version: "1.0.0", Description: "receives alerts",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, MaxDeliver: 3}}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	s := &alertSink{got: map[string]int{}}
	s.accept.Store(accept)
	p.HandleEvent(schemas.TypeAlertFired, func(_ context.Context, e event.Event) error {
		if !s.accept.Load() {
			return sdk.Permanent(errors.New("the sink answered 410 Gone"))
		}
		s.mu.Lock()
		s.got[e.ID()]++
		s.mu.Unlock()
		return nil
	})
	bus.StartPlugin(t, p)
	return s
}

func (s *alertSink) handled() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

// drained reports whether a plugin's consumer has nothing left to deliver
// or in flight and the broker took every advisory.
func drained(bus *plugintest.Bus, plugin string) bool {
	ctx := context.Background()
	cons, err := bus.JetStream().Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName(plugin))
	if err != nil {
		return false
	}
	info, err := cons.Info(ctx)
	if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		return false
	}
	adv, err := bus.JetStream().Stream(ctx, schemas.StreamAdvisories)
	if err != nil {
		return false
	}
	ai, err := adv.Info(ctx)
	return err == nil && ai.State.Msgs == 0
}

// busctl dlq ls/show/replay/purge against a real broker and SDK plugins:
// replay sends each dead letter to the plugin that gave up on it once, and
// to no other; every error path exits non-zero saying what to do.
func TestDLQCommands(t *testing.T) {
	bus := plugintest.Start(t)
	flaky := startSink(t, bus, "flaky", false)
	other := startSink(t, bus, "bystander", true)
	var ids []string
	for i := 1; i <= 3; i++ {
		var res schemas.AlertResponse
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: fmt.Sprintf("a%d", i), Severity: schemas.SeverityWarning, Summary: "load"}, &res)
		ids = append(ids, res.EventID)
	}
	bus.WaitFor(t, func() bool {
		return drained(bus, "flaky") && drained(bus, "bystander") && len(bus.DeadLetters(t, "flaky")) == 3
	})

	out := mustAt(t, bus, "dlq", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ") || !strings.Contains(lines[0], "REPLAYED") {
		t.Fatalf("dlq ls:\n%s", out)
	}
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if f[0] != strconv.Itoa(i+1) || f[2] != "plugin_flaky" || f[3] != schemas.TypeAlertFired || f[4] != ids[i] || f[6] != "-" ||
			!strings.Contains(l, "permanent_failure: the sink answered 410 Gone") {
			t.Errorf("dlq ls row %d: %q", i+1, l)
		}
	}
	var list schemas.DLQListResponse
	if err := json.Unmarshal([]byte(mustAt(t, bus, "dlq", "ls", "--plugin", "flaky", "-o", "json")), &list); err != nil || len(list.DeadLetters) != 3 {
		t.Fatalf("dlq ls --plugin flaky -o json: %v %+v", err, list)
	}
	if out := mustAt(t, bus, "dlq", "ls", "--code", schemas.ReasonMalformed); strings.Count(out, "\n") != 1 {
		t.Errorf("dlq ls --code malformed_event:\n%s", out)
	}
	if out := mustAt(t, bus, "dlq", "ls", "-n", "2", "--from-seq", "2"); strings.Count(out, "\n") != 3 || !strings.Contains(out, ids[1]) || !strings.Contains(out, ids[2]) {
		t.Errorf("dlq ls -n 2 --from-seq 2:\n%s", out)
	}
	out = mustAt(t, bus, "dlq", "show", "1")
	for _, want := range []string{"CONSUMER:", "plugin_flaky", "CODE:", "permanent_failure", "EVENT ID:", ids[0], "EVENT SUBJECT:", "alert/a1", "REPLAYED:", `"id": "a1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq show 1 lacks %q:\n%s", want, out)
		}
	}

	flaky.accept.Store(true)
	out = mustAt(t, bus, "dlq", "replay", "1", "--requested-by", "ops")
	if !strings.Contains(out, "plugin_flaky") || !strings.Contains(out, ids[0]) || !strings.Contains(out, "replayed (event seq") {
		t.Errorf("dlq replay 1:\n%s", out)
	}
	bus.WaitFor(t, func() bool { return flaky.handled()[ids[0]] == 1 && drained(bus, "flaky") })
	// Once: the second time says when it was, and sends nothing.
	out = mustAt(t, bus, "dlq", "replay", "1", "--requested-by", "ops (ticket 42)")
	if !strings.Contains(out, "already replayed") || !strings.Contains(out, "by admin for ops (event seq") || strings.Contains(out, "ticket 42") {
		t.Errorf("dlq replay 1 again:\n%s", out)
	}
	// The rest, picked by plugin: the one replayed already is counted.
	out = mustAt(t, bus, "dlq", "replay", "--plugin", "flaky")
	if !strings.HasPrefix(out, "replayed 2 dead letters (1 already replayed, 0 failed)") {
		t.Errorf("dlq replay --plugin flaky:\n%s", out)
	}
	bus.WaitFor(t, func() bool { h := flaky.handled(); return h[ids[1]] == 1 && h[ids[2]] == 1 && drained(bus, "flaky") })
	var again struct {
		Results         []schemas.DLQReplayResult `json:"results"`
		Replayed        int                       `json:"replayed"`
		AlreadyReplayed int                       `json:"already_replayed"`
	}
	if err := json.Unmarshal([]byte(mustAt(t, bus, "dlq", "replay", "--all", "-o", "json")), &again); err != nil ||
		again.Replayed != 0 || again.AlreadyReplayed != 3 || len(again.Results) != 3 {
		t.Errorf("dlq replay --all -o json after every one was replayed: %v %+v", err, again)
	}
	for _, l := range strings.Split(strings.TrimSpace(mustAt(t, bus, "dlq", "ls")), "\n")[1:] {
		if strings.Fields(l)[6] == "-" {
			t.Errorf("dlq ls shows a replayed dead letter as not replayed: %q", l)
		}
	}
	// Each event reached flaky once more and the bystander only once.
	if h := flaky.handled(); len(h) != 3 || h[ids[0]] != 1 || h[ids[1]] != 1 || h[ids[2]] != 1 {
		t.Errorf("flaky handled %v", h)
	}
	if !drained(bus, "bystander") {
		t.Error("the bystander has redeliveries pending")
	}
	if h := other.handled(); len(h) != 3 || slices.ContainsFunc(ids, func(id string) bool { return h[id] != 1 }) {
		t.Errorf("bystander handled %v", h)
	}
	// The redeliveries are in the event stream, marked.
	tail := mustAt(t, bus, "events", "tail", "-n", "1", "--type", "io.plugbus.>")
	if !strings.Contains(tail, "redelivered to plugin_flaky:") {
		t.Errorf("events tail does not mark the redelivery:\n%s", tail)
	}

	// Errors exit non-zero and say what to do.
	r := at(t, bus, "dlq", "replay", "999")
	if r.code != busctl.ExitError || !strings.Contains(r.stdout, "failed: not_found") || !strings.Contains(r.stdout, "busctl dlq ls") ||
		!strings.Contains(r.stderr, "some dead letters were not replayed") {
		t.Errorf("dlq replay 999: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = at(t, bus, "dlq", "show", "999")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "not_found") || !strings.Contains(r.stderr, "hint: `busctl dlq ls`") {
		t.Errorf("dlq show 999: exit %d\n%s", r.code, r.stderr)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq", "replay"}, "say which dead letters to replay"},
		{[]string{"dlq", "replay", "1", "--all"}, "not both"},
		{[]string{"dlq", "replay", "abc"}, `invalid SEQ "abc"`},
		{[]string{"dlq", "replay", "1", "--code", schemas.ReasonPermanent}, "--code narrows"},
		{[]string{"dlq", "replay", "--plugin", "flaky", "--consumer", "plugin_flaky"}, "give one"},
		{[]string{"dlq", "ls", "--code", "bogus"}, `invalid --code "bogus": use one of malformed_event`},
		{[]string{"dlq", "purge"}, "say which dead letters to purge"},
		{[]string{"dlq", "purge", "1", "--all"}, "one way"},
		{[]string{"dlq", "show"}, "missing SEQ"},
		{[]string{"dlq", "show", "0"}, `invalid SEQ "0"`},
		{[]string{"dlq", "frob"}, `unknown command "frob"`},
	} {
		r := at(t, bus, tt.args...)
		if r.code != busctl.ExitUsage || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "--help") {
			t.Errorf("%v: exit %d\n%s", tt.args, r.code, r.stderr)
		}
	}

	if out := mustAt(t, bus, "dlq", "purge", "1"); out != "purged 1 dead letter\n" {
		t.Errorf("dlq purge 1: %q", out)
	}
	r = at(t, bus, "dlq", "purge", "1", "2")
	if r.code != busctl.ExitError || r.stdout != "purged 1 dead letter\n" || !strings.Contains(r.stderr, "no dead letter 1 in PLUGBUS_DLQ") {
		t.Errorf("dlq purge 1 2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := mustAt(t, bus, "dlq", "purge", "--all", "-o", "json"); !strings.Contains(out, `"purged": 1`) {
		t.Errorf("dlq purge --all -o json: %s", out)
	}
	if out := mustAt(t, bus, "dlq", "ls"); strings.Count(out, "\n") != 1 {
		t.Errorf("dlq ls after purging all:\n%s", out)
	}
}

// Replaying many dead letters on a terminal shows a progress bar; -o json
// does not.
func TestDLQReplayProgress(t *testing.T) {
	bus := plugintest.Start(t)
	sink := startSink(t, bus, "flaky", false)
	const n = 220
	for i := 0; i < n; i++ {
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: fmt.Sprintf("a%d", i), Severity: schemas.SeverityInfo, Summary: "x"}, nil)
	}
	bus.WaitFor(t, func() bool { return drained(bus, "flaky") && len(bus.DeadLetters(t, "flaky")) == n })
	sink.accept.Store(true)
	restore := busctl.SetTerminal(true)
	r := at(t, bus, "dlq", "replay", "--plugin", "flaky")
	restore()
	if r.code != 0 || !strings.HasPrefix(r.stdout, fmt.Sprintf("replayed %d dead letters (0 already replayed, 0 failed)", n)) ||
		!strings.Contains(r.stderr, "replaying dead letters") {
		t.Errorf("dlq replay on a terminal: exit %d\n%s\nstderr %q", r.code, r.stdout, r.stderr)
	}
	bus.WaitFor(t, func() bool { return len(sink.handled()) == n && drained(bus, "flaky") })
	defer busctl.SetTerminal(true)()
	r = at(t, bus, "dlq", "replay", "--all", "-o", "json")
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, fmt.Sprintf(`"already_replayed": %d`, n)) {
		t.Errorf("dlq replay --all -o json: exit %d, stderr %q", r.code, r.stderr)
	}
}
