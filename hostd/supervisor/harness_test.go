package supervisor

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// harness runs one Supervisor on a fake clock and records its lines and
// state changes.
type harness struct {
	t      *testing.T
	s      *Supervisor
	clock  *fakeClock
	cancel context.CancelFunc
	done   chan error

	stopOnce sync.Once
	runErr   error

	mu      sync.Mutex
	lines   []Line
	changes []Status
}

// run starts Run with spec on a fake clock; opts come after the harness's
// own, so they may override them.
func run(t *testing.T, spec Spec, opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), done: make(chan error, 1)}
	opts = append([]Option{WithClock(h.clock), WithLines(h.addLine), WithOnChange(h.addChange)}, opts...)
	s, err := New(spec, opts...)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) addLine(l Line) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, l)
}

func (h *harness) addChange(s Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.changes = append(h.changes, s)
}

// stop ends Run's context and returns Run's error.
func (h *harness) stop() error {
	h.t.Helper()
	h.stopOnce.Do(func() {
		h.cancel()
		select {
		case h.runErr = <-h.done:
		case <-time.After(30 * time.Second):
			h.t.Fatal("Run did not return after its context ended")
		}
	})
	return h.runErr
}

func (h *harness) waitStatus(what string, cond func(Status) bool) Status {
	h.t.Helper()
	var st Status
	waitFor(h.t, what, func() bool {
		st = h.s.Status()
		return cond(st)
	})
	return st
}

func (h *harness) waitState(want State) Status {
	h.t.Helper()
	return h.waitStatus(string(want), func(st Status) bool { return st.State == want })
}

// waitRunningNot waits for a RUNNING child other than pid.
func (h *harness) waitRunningNot(pid int) Status {
	h.t.Helper()
	return h.waitStatus("a new RUNNING child", func(st Status) bool { return st.State == StateRunning && st.PID != pid })
}

func (h *harness) waitLine(raw string) {
	h.t.Helper()
	waitFor(h.t, "line "+raw, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return slices.ContainsFunc(h.lines, func(l Line) bool { return l.Raw == raw })
	})
}

func (h *harness) gotLines() []Line {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lines)
}

func (h *harness) states() []State {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []State
	for _, c := range h.changes {
		s = append(s, c.State)
	}
	return s
}

// waitGone waits until pid no longer runs.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, "process to be gone", func() bool { return processGone(pid) })
}

func kill(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// within checks a jittered wait against its base.
func within(t *testing.T, got, base time.Duration, jitter float64, max time.Duration) {
	t.Helper()
	lo := time.Duration(float64(base) * (1 - jitter))
	hi := min(time.Duration(float64(base)*(1+jitter))+time.Nanosecond, max)
	if got < lo || got > hi {
		t.Fatalf("wait %v, want %v ±%.0f%% (in [%v, %v])", got, base, jitter*100, lo, hi)
	}
}
