package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// stepLog counts the hook plugins' CALL and RAN lines per plugin and
// idempotency key.
type stepLog struct {
	mu    sync.Mutex
	calls map[string]map[string]int // plugin → key → step requests that arrived
	ran   map[string]map[string]int // plugin → key → handler runs
}

func newStepLog() *stepLog {
	return &stepLog{calls: map[string]map[string]int{}, ran: map[string]map[string]int{}}
}

// of returns the onLine function of one plugin's process.
func (l *stepLog) of(plugin string) func(string) {
	return func(line string) {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "CALL" && f[0] != "RAN") {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		m := l.calls
		if f[0] == "RAN" {
			m = l.ran
		}
		if m[plugin] == nil {
			m[plugin] = map[string]int{}
		}
		m[plugin][f[1]]++
	}
}

// count is how many CALL (or RAN) lines a plugin printed, over all keys.
func (l *stepLog) count(plugin string, ran bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.calls
	if ran {
		m = l.ran
	}
	n := 0
	for _, k := range m[plugin] {
		n += k
	}
	return n
}

// keys copies a plugin's counts by key.
func (l *stepLog) keys(plugin string, ran bool) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.calls
	if ran {
		m = l.ran
	}
	out := map[string]int{}
	for k, n := range m[plugin] {
		out[k] = n
	}
	return out
}

// Scenario: kill -9 of the broker while step 3 of a 5-step alert.pre_notify
// chain runs (five hook plugin processes, step 3's handler held until the
// suite says so), restarted on the same data dir and port. The chain
// resumes from the journal: steps 1 and 2 are not sent again, step 3 is
// (same idempotency key: the plugin's HookAnswers joins it to the call
// still running), 4 and 5 run once; the caller gets the answer (on the
// request it waits on, or on a retry with its key); one alert, one fired
// event; chains.get shows the resume.
func TestChainResume(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	log := newStepLog()
	const steps = 5
	var pls []*plugin
	for i := 1; i <= steps; i++ {
		name := fmt.Sprintf("chain-%d", i)
		env := []string{"HOOKPLUGIN_NAME=" + name, fmt.Sprintf("HOOKPLUGIN_PRIORITY=%d", i), "HOOKPLUGIN_TIMEOUT=30s",
			"HOOKPLUGIN_DELAY=0s", fmt.Sprintf("HOOKPLUGIN_LABEL=step%d", i), "HOOKPLUGIN_REMEMBER=1"}
		if i == 3 {
			env = append(env, "HOOKPLUGIN_BLOCK=stdin")
		}
		pls = append(pls, b.startPlugin(t, name, "hookplugin", env, log.of(name)))
	}
	held := pls[2]

	h := newHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	done := make(chan struct{})
	go func() {
		h.run(ctx, load{c: b.admin(t), n: 1, workers: 1, prefix: "resume", timeout: 20 * time.Second})
		close(done)
	}()
	waitFor(t, "step 3 called", waitLimit, func() bool { return log.count(held.name, false) == 1 })
	pid := b.broker.pid()
	b.broker.kill9(t)
	down := time.Now()
	b.start(t)
	back := time.Since(down)
	waitFor(t, "step 3 sent again by the restarted broker", waitLimit, func() bool { return log.count(held.name, false) == 2 })
	if _, err := fmt.Fprintln(held.p.stdin, "release"); err != nil {
		t.Fatalf("release step 3: %v", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the alert was not answered")
	}

	js := b.jetstream(t)
	v := check(h, storedAlerts(t, js, "io.plugbus.alert.v1.fired"), nil)
	v.Scenario = "chain-resume"

	// From the plugins' point of view: every step ran once; step 3's
	// request came twice, with the same key, and was recognised.
	var chainID string
	for i, pl := range pls {
		calls, ran := log.keys(pl.name, false), log.keys(pl.name, true)
		wantCalls := 1
		if i == 2 {
			wantCalls = 2
		}
		if len(calls) != 1 || len(ran) != 1 {
			t.Errorf("%s: step requests %v, handler runs %v: want one key each", pl.name, calls, ran)
			continue
		}
		for key, n := range calls {
			if n != wantCalls || ran[key] != 1 {
				t.Errorf("%s: key %s requested %d times (want %d), run %d times (want 1)", pl.name, key, n, wantCalls, ran[key])
			}
			id, step, _ := strings.Cut(key, "/")
			if chainID == "" {
				chainID = id
			}
			if id != chainID || step != fmt.Sprint(i) {
				t.Errorf("%s: key %s, want %s/%d", pl.name, key, chainID, i)
			}
		}
	}

	// The operation happened once: one alert, one fired event, with every
	// step's label; one chain_completed event.
	ops := h.snapshot()
	o := ops["resume-00000"]
	var fired schemas.Alert
	events := readStream(t, js, schemas.StreamEvents, wire.EventSubject(wire.DefaultPrefix, schemas.TypeAlertFired))
	if len(events) != 1 {
		t.Fatalf("%d fired events, want 1", len(events))
	}
	if err := json.Unmarshal(events[0].Data, &fired); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= steps; i++ {
		if fired.Labels[fmt.Sprintf("step%d", i)] != fmt.Sprintf("chain-%d", i) {
			t.Errorf("fired alert labels %v: step%d's patch missing", fired.Labels, i)
		}
	}
	if completed := readStream(t, js, schemas.StreamEvents, wire.EventSubject(wire.DefaultPrefix, schemas.TypeHookChainCompleted)); len(completed) != 1 {
		t.Errorf("%d chain_completed events, want 1", len(completed))
	}

	// chains get: resumed, steps 1-2 replayed from the journal, the
	// operation done with the answer the caller got.
	gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer gcancel()
	st, err := b.admin(t).ChainGet(gctx, chainID)
	if err != nil {
		t.Fatalf("chains get %s: %v", chainID, err)
	}
	var replayed []string
	for _, s := range st.Chain.Steps {
		if s.Replayed {
			replayed = append(replayed, s.Plugin)
		}
	}
	if st.Chain.Outcome != schemas.ChainCompleted || !st.Chain.Resumed || len(st.Chain.Steps) != steps ||
		strings.Join(replayed, ",") != "chain-1,chain-2" || st.Operation.State != schemas.OperationDone || st.Operation.Resumes < 1 {
		t.Errorf("chains get %s: outcome %s, resumed %v, replayed %v, operation %s with %d resumes", chainID, st.Chain.Outcome,
			st.Chain.Resumed, replayed, st.Operation.State, st.Operation.Resumes)
	}
	var answer schemas.AlertResponse
	if err := json.Unmarshal(st.Operation.Result, &answer); err != nil || answer.EventID != o.EventID || o.EventID == "" {
		t.Errorf("chains get: the operation's answer has event %q, the caller got %q (%v)", answer.EventID, o.EventID, err)
	}

	v.Notes = fmt.Sprintf("5 hook plugin processes on alert.pre_notify; kill -9 while step 3 ran (pid %d, back in %.1fs); "+
		"step requests per plugin %d/%d/%d/%d/%d, handler runs %d/%d/%d/%d/%d; steps replayed from the journal: %s; "+
		"the caller's %d attempts, %s; 1 fired event with all 5 labels, 1 chain_completed",
		pid, back.Seconds(),
		log.count("chain-1", false), log.count("chain-2", false), log.count("chain-3", false), log.count("chain-4", false), log.count("chain-5", false),
		log.count("chain-1", true), log.count("chain-2", true), log.count("chain-3", true), log.count("chain-4", true), log.count("chain-5", true),
		strings.Join(replayed, ", "), o.Attempts, h.retriesNote())
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
	if *v.Acknowledged != 1 || *v.Stored != 1 || *v.Duplicated != 0 {
		t.Errorf("acknowledged %d, stored %d, duplicated %d; want 1, 1, 0", *v.Acknowledged, *v.Stored, *v.Duplicated)
	}
}
