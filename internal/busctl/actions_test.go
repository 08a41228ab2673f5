package busctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// worker is a plugin whose action "work" reports 50% and then waits for
// the test to release it (or for its context to end).
type worker struct {
	release chan struct{}
	ended   chan error
}

func startWorker(t *testing.T, bus replayBus) *worker {
	t.Helper()
	p, err := sdk.New(schemas.Manifest{Name: "worker", Version: "1.0.0", Actions: []schemas.ActionSpec{
		{Command: "work", Model: "machines", Timeout: schemas.Duration(time.Hour)},
	}}, sdk.WithPrefix(bus.Prefix()), sdk.WithActionAcceptAfter(0))
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{release: make(chan struct{}), ended: make(chan error, 4)}
	p.HandleAction("work", func(ctx context.Context, a *sdk.Action) (any, error) {
		if err := p.Progress(ctx, 50, "halfway"); err != nil {
			return nil, err
		}
		select {
		case <-w.release:
			return map[string]any{"worked": a.Object}, nil
		case <-ctx.Done():
			w.ended <- context.Cause(ctx)
			return nil, ctx.Err()
		}
	})
	bus.StartPlugin(t, p)
	return w
}

// halfway waits until the only active action reports 50% and returns it.
func halfway(t *testing.T, bus replayBus) schemas.ActionRecord {
	t.Helper()
	var rec schemas.ActionRecord
	bus.WaitFor(t, func() bool {
		var list schemas.ActionListResponse
		bus.MustCall(t, schemas.APIActionsList, schemas.ActionListRequest{Status: schemas.ActionStatusActive}, &list)
		if len(list.Actions) == 1 && list.Actions[0].Progress != nil {
			rec = list.Actions[0]
			return true
		}
		return false
	})
	return rec
}

func wantExit(t *testing.T, r result, code int, stdout string, stderr ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	if stdout != "" && r.stdout != stdout {
		t.Errorf("stdout %q, want %q", r.stdout, stdout)
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

// TestMachineActionWaits: busctl machine action waits for a long action
// (the plugin accepted it at once) and prints its result; off a terminal
// it draws no bar.
func TestMachineActionWaits(t *testing.T) {
	bus := replayBus{plugintest.Start(t)}
	w := startWorker(t, bus)
	go func() {
		halfway(t, bus)
		close(w.release)
	}()
	r := bus.busctl(t, "machine", "action", "m1", "work")
	wantExit(t, r, 0, "{\n  \"worked\": \"m1\"\n}\n")
	if r.stderr != "" {
		t.Errorf("stderr off a terminal: %q", r.stderr)
	}
	wantExit(t, bus.busctl(t, "machine", "action", "m1", "work", "--wait", "--no-wait"), 2, "", "--wait and --no-wait are alternatives")
}

// TestActionsNoWaitGetWatchCancel: --no-wait prints the id; actions get,
// ls and watch follow the action; cancel ends one and reaches its
// handler; bad ids get codes and hints.
func TestActionsNoWaitGetWatchCancel(t *testing.T) {
	bus := replayBus{plugintest.Start(t)}
	w := startWorker(t, bus)

	r := bus.busctl(t, "machine", "action", "m1", "work", "--no-wait")
	wantExit(t, r, 0, "")
	id := strings.TrimSpace(r.stdout)
	if rec := halfway(t, bus); rec.ID != id {
		t.Fatalf("--no-wait printed %q, the action is %s", id, rec.ID)
	}
	out := bus.busctl(t, "actions", "get", id)
	wantExit(t, out, 0, "")
	for _, want := range []string{"ID:        " + id, "MACHINE:   m1", "STATUS:    running", "PROGRESS:  50% halfway", "TIMEOUT:   1h0m0s"} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("actions get lacks %q:\n%s", want, out.stdout)
		}
	}
	ls := bus.busctl(t, "actions", "ls", "--status", "active")
	wantExit(t, ls, 0, "")
	if lines := strings.Split(strings.TrimSpace(ls.stdout), "\n"); len(lines) != 2 || !strings.Contains(lines[1], id) || !strings.Contains(lines[1], "running") {
		t.Errorf("actions ls:\n%s", ls.stdout)
	}

	done := make(chan result, 1)
	go func() { done <- bus.busctl(t, "actions", "watch", id) }()
	close(w.release)
	r = <-done
	wantExit(t, r, 0, "50% halfway\n{\n  \"worked\": \"m1\"\n}\n")

	var rec schemas.ActionRecord
	r = bus.busctl(t, "-o", "json", "actions", "get", id)
	wantExit(t, r, 0, "")
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.Status != schemas.ActionSucceeded {
		t.Fatalf("-o json actions get: %v\n%s", err, r.stdout)
	}
	wantExit(t, bus.busctl(t, "actions", "cancel", id), 1, "", "error: conflict: action "+id+" already succeeded",
		"hint: `busctl actions get "+id+"` shows how it ended")
	wantExit(t, bus.busctl(t, "actions", "get", "nope"), 1, "", "error: not_found: action \"nope\" does not exist",
		"hint: `busctl actions ls` lists the recent actions")
	wantExit(t, bus.busctl(t, "actions", "ls", "--status", "sleeping"), 2, "", "invalid --status")

	// Cancel a second one while busctl waits for it.
	w.release = make(chan struct{})
	waiting := make(chan result, 1)
	go func() { waiting <- bus.busctl(t, "machine", "action", "m2", "work") }()
	rec = halfway(t, bus)
	r = bus.busctl(t, "actions", "cancel", rec.ID, "--reason", "maintenance window closed")
	wantExit(t, r, 0, "cancelled action "+rec.ID+" (work on m2); its plugin's handler was cancelled\n")
	select {
	case cause := <-w.ended:
		if !strings.Contains(cause.Error(), "cancelled by an operator: maintenance window closed") {
			t.Errorf("handler's cause: %v", cause)
		}
	case <-time.After(plugintest.WaitTimeout):
		t.Fatal("the handler's context was not cancelled")
	}
	wantExit(t, <-waiting, 1, "", "error: cancelled: cancelled by an operator: maintenance window closed",
		"hint: `busctl actions get "+rec.ID+"` shows its last progress")
}

// A person at a terminal watches an action's progress bar on stderr
// (the result alone on stdout); with -o yaml there is no bar, and the
// reply and the action's record are YAML.
func TestMachineActionProgressBar(t *testing.T) {
	bus := replayBus{plugintest.Start(t)}
	w := startWorker(t, bus)
	go func() {
		halfway(t, bus)
		close(w.release)
	}()
	restore := busctl.SetTerminal(true)
	r := bus.busctl(t, "machine", "action", "m1", "work")
	restore()
	wantExit(t, r, 0, "{\n  \"worked\": \"m1\"\n}\n", "work m1 [", "% halfway")

	defer busctl.SetTerminal(true)()
	w.release = make(chan struct{})
	r = bus.busctl(t, "-o", "yaml", "machine", "action", "m2", "work", "--no-wait")
	wantExit(t, r, 0, "")
	if r.stderr != "" || !strings.Contains(r.stdout, "machine: m2\n") || !strings.Contains(r.stdout, "status: running\n") {
		t.Fatalf("-o yaml machine action --no-wait: stderr %q\n%s", r.stderr, r.stdout)
	}
	rec := halfway(t, bus)
	r = bus.busctl(t, "-o", "yaml", "actions", "get", rec.ID)
	wantExit(t, r, 0, "")
	if r.stderr != "" || !strings.Contains(r.stdout, "id: "+rec.ID+"\n") || !strings.Contains(r.stdout, "  message: halfway\n") {
		t.Errorf("-o yaml actions get: stderr %q\n%s", r.stderr, r.stdout)
	}
	if r = bus.busctl(t, "-o", "yaml", "actions", "cancel", rec.ID); r.code != 0 || !strings.Contains(r.stdout, "status: cancelled\n") ||
		!strings.Contains(r.stdout, "notified: true\n") {
		t.Errorf("-o yaml actions cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantExit(t, bus.busctl(t, "actions", "ls", "-n", "0"), 2, "", "invalid --count 0")
}

func TestActionProgressLine(t *testing.T) {
	rec := func(status string, pct float64, msg string) *schemas.ActionRecord {
		r := &schemas.ActionRecord{Command: "firmware-update", Object: "m1", Status: status}
		if pct >= 0 {
			r.Progress = &schemas.ActionProgress{Percent: pct, Message: msg, Seq: 1}
		}
		return r
	}
	for _, c := range []struct {
		r    *schemas.ActionRecord
		want string
	}{
		{rec(schemas.ActionPending, -1, ""), "firmware-update m1 [>         ]   0% (pending)"},
		{rec(schemas.ActionRunning, 42, "flashing bank 1"), "firmware-update m1 [====>     ]  42% flashing bank 1"},
		{rec(schemas.ActionRunning, 100, ""), "firmware-update m1 [==========] 100%"},
		{rec(schemas.ActionSucceeded, 80, "verifying"), "firmware-update m1 [==========] 100% verifying"},
	} {
		if got := busctl.ActionLine(c.r, 10); got != c.want {
			t.Errorf("ActionLine(%s %+v) = %q, want %q", c.r.Status, c.r.Progress, got, c.want)
		}
	}
}
