package supervisor

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

const s1 = time.Second

// The waits of a child that crashes at once: 1s doubling to the 30s cap,
// exact without jitter and within ±20% with the default jitter.
func TestBackoffDoublesToCap(t *testing.T) {
	for _, jitter := range []float64{0, 0.2} {
		t.Run(fmt.Sprintf("jitter %.1f", jitter), func(t *testing.T) {
			p := DefaultPolicy()
			p.Jitter = jitter
			p.MaxFailures = 0 // never FAILED: watch the cap
			h := run(t, helperSpec(modeCrash), WithPolicy(p))
			for i, base := range []time.Duration{1 * s1, 2 * s1, 4 * s1, 8 * s1, 16 * s1, 30 * s1, 30 * s1, 30 * s1} {
				d := h.clock.waitTimer(t)
				if jitter == 0 && d != base {
					t.Fatalf("wait %d: %v, want exactly %v", i, d, base)
				}
				within(t, d, base, jitter, p.MaxBackoff)
				st := h.s.Status()
				if st.State != StateBackoff || !st.RetryAt.Equal(h.clock.Now().Add(d)) || st.PID != 0 {
					t.Fatalf("status in backoff: %+v", st)
				}
				if st.Restarts != i {
					t.Fatalf("restarts %d, want %d", st.Restarts, i)
				}
				h.clock.Advance(d)
			}
		})
	}
}

// A child that was RUNNING for the healthy period starts the backoff at 1s
// again; one that ran a little less does not.
func TestBackoffResetsAfterHealthyPeriod(t *testing.T) {
	p := DefaultPolicy()
	h := run(t, helperSpec(modeServe))
	pid := 0
	for _, step := range []struct {
		ran  time.Duration
		want time.Duration
	}{
		{0, 1 * s1},
		{0, 2 * s1},
		{p.HealthyPeriod - time.Millisecond, 4 * s1},
		{0, 8 * s1},
		{p.HealthyPeriod, 1 * s1},
		{0, 2 * s1},
	} {
		st := h.waitRunningNot(pid)
		pid = st.PID
		h.clock.Advance(step.ran)
		kill(t, pid)
		d := h.clock.waitTimer(t)
		within(t, d, step.want, p.Jitter, p.MaxBackoff)
		last := h.s.Status().LastExit
		if last == nil || last.Cause != CauseExited || last.Signal != "SIGKILL" || last.Code != -1 || last.Reason != "killed by SIGKILL" {
			t.Fatalf("last exit %+v", last)
		}
		h.clock.Advance(d)
	}
}

// Five failures within 60s: FAILED with the last exit status and the stderr
// tail, no further start, and Restart starts afresh.
func TestCrashLoopFailsUntilRestart(t *testing.T) {
	h := run(t, helperSpec(modeCrash))
	for range 4 {
		h.clock.Advance(h.clock.waitTimer(t))
	}
	st := h.waitState(StateFailed)
	if ds := h.clock.pending(); len(ds) != 0 {
		t.Fatalf("FAILED must not wait to retry: timers %v", ds)
	}
	last := st.LastExit
	if last == nil || last.Code != 3 || last.Signal != "" || last.Cause != CauseExited || last.Reason != "exited with code 3" || !last.Failure() {
		t.Fatalf("last exit %+v", last)
	}
	if len(st.StderrTail) != StderrTailLines || st.StderrTail[0] != "crash line 10" || st.StderrTail[StderrTailLines-1] != "crash line 29" {
		t.Fatalf("stderr tail %q", st.StderrTail)
	}
	if st.FailureReason != "5 failures within 1m0s, last: exited with code 3" || st.PID != 0 || st.Restarts != 4 {
		t.Fatalf("status %+v", st)
	}
	// Without a readiness check a started child is RUNNING at once.
	var want []State
	for range 4 {
		want = append(want, StateStarting, StateRunning, StateBackoff)
	}
	want = append(want, StateStarting, StateRunning, StateFailed)
	if got := h.states(); !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	// Long after, still FAILED: nothing is waiting to start it.
	h.clock.Advance(time.Hour)
	if st := h.s.Status(); st.State != StateFailed {
		t.Fatalf("state %s after an hour", st.State)
	}

	h.s.Restart()
	st = h.waitState(StateBackoff) // crashed again, but the window is fresh
	within(t, h.clock.waitTimer(t), 1*s1, DefaultPolicy().Jitter, 30*s1)
	if st.FailureReason != "" || st.Restarts != 5 {
		t.Fatalf("after Restart: %+v", st)
	}
}

// The window slides: failures older than it do not count.
func TestCrashLoopWindow(t *testing.T) {
	p := DefaultPolicy()
	r := newRestartPolicy(p)
	t0 := time.Unix(1000, 0)
	for _, at := range []time.Duration{0, 20 * s1, 40 * s1, 59 * s1, 60 * s1, 61 * s1} {
		// 0 drops out at 60s, 20s would at 80s: the fifth failure in one
		// window is the one at 61s (20, 40, 59, 60, 61).
		_, giveUp := r.failed(t0.Add(at), 0)
		if giveUp != (at == 61*s1) {
			t.Fatalf("failure at %v: giveUp %v", at, giveUp)
		}
	}
	r.reset()
	if _, giveUp := r.failed(t0.Add(62*s1), 0); giveUp {
		t.Fatal("reset must forget the failures")
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*Policy)
	}{
		{"Policy.InitialBackoff", func(p *Policy) { p.InitialBackoff = 0 }},
		{"Policy.MaxBackoff", func(p *Policy) { p.MaxBackoff = p.InitialBackoff / 2 }},
		{"Policy.Multiplier", func(p *Policy) { p.Multiplier = 0.5 }},
		{"Policy.Jitter", func(p *Policy) { p.Jitter = 1 }},
		{"Policy.Jitter", func(p *Policy) { p.Jitter = -0.1 }},
		{"Policy.HealthyPeriod", func(p *Policy) { p.HealthyPeriod = 0 }},
		{"Policy.MaxFailures", func(p *Policy) { p.MaxFailures = -1 }},
		{"Policy.FailureWindow", func(p *Policy) { p.FailureWindow = 0 }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			p := DefaultPolicy()
			tc.edit(&p)
			_, err := New(helperSpec(modeServe), WithPolicy(p))
			var fe *FieldError
			if !errors.Is(err, ErrInvalidOption) || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	p.MaxFailures, p.FailureWindow = 0, 0 // no crash-loop limit needs no window
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}
