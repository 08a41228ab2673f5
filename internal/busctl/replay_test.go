package busctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// replayBus is a real bus (nats-server and broker) with real SDK plugins.
type replayBus struct {
	*plugintest.Bus
}

func (b replayBus) busctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := busctl.Execute(context.Background(), append([]string{"--server", b.URL()}, args...), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// seen records the events a plugin handled: their ids, and whether a
// replay redelivered them.
type seen struct {
	// hold makes the plugin retry replayed events instead of handling them.
	hold     atomic.Bool
	mu       sync.Mutex
	first    []string
	replayed []string
}

func (s *seen) ids() (first, replayed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.first), slices.Clone(s.replayed)
}

func (s *seen) has(id string) bool {
	first, _ := s.ids()
	return slices.Contains(first, id)
}

func startSeen(t *testing.T, bus replayBus, name string, types ...string) *seen {
	t.Helper()
	// Held events are retried until released, never given up on.
	p, err := sdk.New(schemas.Manifest{Name: name, Version: "1.0.0", Events: &schemas.EventSubscription{Types: types, MaxDeliver: 1 << 30}},
		sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	s := &seen{}
	for _, typ := range types {
		p.HandleEvent(typ, func(_ context.Context, e event.Event) error {
			if sdk.ReplayOf(e) != "" && s.hold.Load() {
				return sdk.RetryAfter(5*time.Millisecond, errors.New("held"))
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if sdk.ReplayOf(e) != "" {
				s.replayed = append(s.replayed, e.ID())
			} else {
				s.first = append(s.first, e.ID())
			}
			return nil
		})
	}
	bus.StartPlugin(t, p)
	return s
}

func (b replayBus) alert(t *testing.T, id string) string {
	t.Helper()
	var resp schemas.AlertResponse
	b.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityCritical, Summary: "disk full on " + id}, &resp)
	return resp.EventID
}

func (b replayBus) job(t *testing.T, name string) string {
	t.Helper()
	var resp schemas.JobResponse
	b.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: name, Version: "1.0.0", Image: "nginx:1.27"}, &resp)
	return resp.EventID
}

// startReplayBus runs a bus with plugins watcher (alerts and jobs) and
// bystander (alerts), and gives them three alerts and two jobs.
func startReplayBus(t *testing.T) (bus replayBus, watcher, bystander *seen, alerts, jobs []string) {
	t.Helper()
	bus = replayBus{plugintest.Start(t)}
	watcher = startSeen(t, bus, "watcher", schemas.TypeAlertFired, schemas.TypeJobDeployed)
	bystander = startSeen(t, bus, "bystander", schemas.TypeAlertFired)
	for i := range 3 {
		alerts = append(alerts, bus.alert(t, fmt.Sprintf("m%d", i)))
		if i < 2 {
			jobs = append(jobs, bus.job(t, fmt.Sprintf("web%d", i)))
		}
	}
	bus.WaitFor(t, func() bool {
		w, _ := watcher.ids()
		b, _ := bystander.ids()
		return len(w) == 5 && len(b) == 3
	})
	return bus, watcher, bystander, alerts, jobs
}

// settle waits until a last alert reached both plugins, so that anything
// a replay delivered to the wrong one would have shown.
func settle(t *testing.T, bus replayBus, plugins ...*seen) {
	t.Helper()
	id := bus.alert(t, "sentinel")
	bus.WaitFor(t, func() bool {
		for _, p := range plugins {
			if !p.has(id) {
				return false
			}
		}
		return true
	})
}

func TestPluginsReplaySince(t *testing.T) {
	bus, watcher, bystander, alerts, jobs := startReplayBus(t)
	r := bus.busctl(t, "plugins", "replay", "watcher", "--since", "1h")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := "replayed 5 events of io.plugbus.alert.v1.fired, io.plugbus.job.v1.deployed to watcher, stored since "
	if !strings.HasPrefix(r.stdout, want) || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q; want it to start with %q and no progress off a terminal", r.stdout, r.stderr, want)
	}
	settle(t, bus, watcher, bystander)
	_, replayed := watcher.ids()
	slices.Sort(replayed)
	all := append(slices.Clone(alerts), jobs...)
	slices.Sort(all)
	if !slices.Equal(replayed, all) {
		t.Errorf("watcher got replayed %v, want each past event once: %v", replayed, all)
	}
	if first, replayed := bystander.ids(); len(replayed) != 0 || len(first) != 4 {
		t.Errorf("bystander got %v and replayed %v: want its 3 alerts and the sentinel, nothing replayed", first, replayed)
	}
}

func TestPluginsReplayFromSeqOneTypeJSON(t *testing.T) {
	bus, watcher, bystander, _, jobs := startReplayBus(t)
	r := bus.busctl(t, "-o", "json", "plugins", "replay", "watcher", "--from-seq", "1", "--type", schemas.TypeJobDeployed)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var st schemas.ReplayStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("-o json printed %q: %v", r.stdout, err)
	}
	if !st.Done || st.Total != 2 || st.Replayed != 2 || st.Remaining != 0 || !slices.Equal(st.Types, []string{schemas.TypeJobDeployed}) ||
		st.Plugin != "watcher" || st.ID == "" || st.FromSeq < 1 {
		t.Errorf("status = %+v, want the 2 jobs replayed", st)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q: -o json stays quiet", r.stderr)
	}
	settle(t, bus, watcher, bystander)
	if _, replayed := watcher.ids(); !slices.Equal(replayed, jobs) {
		t.Errorf("replayed %v, want the jobs %v", replayed, jobs)
	}
	if _, replayed := bystander.ids(); len(replayed) != 0 {
		t.Errorf("bystander got replayed %v", replayed)
	}
	// A sequence after everything the plugin was given: nothing to do.
	r = bus.busctl(t, "plugins", "replay", "watcher", "--from-seq", "100000")
	if r.code != 0 || r.stdout != "nothing to replay: watcher had been given no event of io.plugbus.alert.v1.fired, io.plugbus.job.v1.deployed from stream sequence 100000 on\n" {
		t.Errorf("replay from a future sequence: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestPluginsReplayErrors(t *testing.T) {
	bus, watcher, _, _, _ := startReplayBus(t)
	tests := []struct {
		name string
		args []string
		code int
		want []string // in stderr
	}{
		{"negative seq", []string{"--from-seq", "-3"}, busctl.ExitUsage,
			[]string{"invalid --from-seq -3: a stream sequence is 1 or more", "busctl plugins replay --help"}},
		{"zero seq", []string{"--from-seq", "0"}, busctl.ExitUsage, []string{"invalid --from-seq 0"}},
		{"seq not a number", []string{"--from-seq", "ten"}, busctl.ExitUsage, []string{`invalid value "ten" for --from-seq: must be a whole number`}},
		{"unparseable since", []string{"--since", "yesterday"}, busctl.ExitUsage,
			[]string{`invalid --since "yesterday"`, "1h30m", "RFC 3339"}},
		{"negative since", []string{"--since", "-2h"}, busctl.ExitUsage, []string{`invalid --since "-2h"`, "positive"}},
		{"unparseable time", []string{"--from-time", "2025-05-01 12:00"}, busctl.ExitUsage,
			[]string{`invalid --from-time "2025-05-01 12:00": use an RFC 3339 time such as 2025-05-01T12:00:00Z`}},
		{"future time", []string{"--from-time", "2999-01-01T00:00:00Z"}, busctl.ExitError,
			[]string{"invalid_field", "from_time", "in the future"}},
		{"no start", nil, busctl.ExitUsage, []string{"say where the replay starts: --since 2h, --from-seq N or --from-time"}},
		{"two starts", []string{"--since", "1h", "--from-seq", "1"}, busctl.ExitUsage, []string{"alternatives: give one"}},
		{"bad type pattern", []string{"--since", "1h", "--type", "io.plugbus.alert.v1.fi*"}, busctl.ExitUsage, []string{`invalid --type "io.plugbus.alert.v1.fi*"`}},
		{"unknown type", []string{"--since", "1h", "--type", schemas.TypeMachineActionCompleted}, busctl.ExitError,
			[]string{"invalid_field: plugin watcher does not consume events of type io.plugbus.machine.v1.action_completed",
				"hint: watcher consumes io.plugbus.alert.v1.fired, io.plugbus.job.v1.deployed: pass those to --type"}},
		{"status of none", []string{"--status"}, busctl.ExitError,
			[]string{"not_found: plugin watcher has no replay running", "hint: start one with `busctl plugins replay watcher --since 1h`"}},
		{"cancel of none", []string{"--cancel"}, busctl.ExitError, []string{"not_found"}},
		{"status with a start", []string{"--status", "--since", "1h"}, busctl.ExitUsage, []string{"--status and --cancel act on the running replay"}},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			r := bus.busctl(t, append([]string{"plugins", "replay", "watcher"}, c.args...)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, c.code, r.stdout, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
	t.Run("unknown plugin", func(t *testing.T) {
		r := bus.busctl(t, "plugins", "replay", "nobody", "--since", "1h")
		if r.code != busctl.ExitError || !strings.Contains(r.stderr, `not_found: plugin "nobody" is not registered`) ||
			!strings.Contains(r.stderr, "hint: `busctl plugins ls` lists the registered plugins") {
			t.Errorf("exit %d\n%s", r.code, r.stderr)
		}
	})
	settle(t, bus, watcher)
	if _, replayed := watcher.ids(); len(replayed) != 0 {
		t.Errorf("a refused replay redelivered %v", replayed)
	}
}

func TestReplayProgressLine(t *testing.T) {
	for _, c := range []struct {
		done, total uint64
		want        string
	}{
		{0, 40, "replaying w [>         ] 0/40 events"},
		{12, 40, "replaying w [===>      ] 12/40 events"},
		{40, 40, "replaying w [==========] 40/40 events"},
		{50, 40, "replaying w [==========] 40/40 events"},
	} {
		if got := busctl.ProgressLine("w", c.done, c.total, 10); got != c.want {
			t.Errorf("%d/%d: %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

func TestPluginsReplayConflictAndCancel(t *testing.T) {
	bus, watcher, _, _, _ := startReplayBus(t)
	watcher.hold.Store(true)
	var st schemas.ReplayStatus
	bus.MustCall(t, schemas.APIPluginsReplay, schemas.PluginReplayRequest{Name: "watcher", FromSeq: 1}, &st)

	r := bus.busctl(t, "plugins", "replay", "watcher", "--since", "1h")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "conflict: plugin watcher is already replaying (replay "+st.ID) ||
		!strings.Contains(r.stderr, "hint: `busctl plugins replay watcher --status` follows the running replay, `busctl plugins replay watcher --cancel` stops it") {
		t.Errorf("second replay: exit %d\n%s", r.code, r.stderr)
	}
	r = bus.busctl(t, "-o", "json", "plugins", "replay", "watcher", "--cancel")
	var cancelled schemas.ReplayStatus
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &cancelled) != nil || !cancelled.Cancelled || cancelled.Done ||
		cancelled.ID != st.ID || cancelled.Total != 5 || cancelled.Replayed != 0 {
		t.Errorf("cancel: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := bus.busctl(t, "plugins", "replay", "watcher", "--status"); r.code != busctl.ExitError || !strings.Contains(r.stderr, "not_found") {
		t.Errorf("status after cancel: exit %d %s", r.code, r.stderr)
	}
	// The plugin stops pulling from the cancelled replay; a new one runs.
	watcher.hold.Store(false)
	r = bus.busctl(t, "plugins", "replay", "watcher", "--from-seq", "1", "--type", schemas.TypeJobDeployed)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "replayed 2 events of io.plugbus.job.v1.deployed to watcher, from stream sequence ") {
		t.Errorf("replay after cancel: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}
