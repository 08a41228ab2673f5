package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A child that is never ready is stopped at the start timeout, and that
// counts as a failed start: the backoff follows. A readiness error fails
// the start at once.
func TestNotReady(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		h := run(t, helperSpec(modeHang), WithReadiness(func(ctx context.Context, pid int) error {
			<-ctx.Done()
			return ctx.Err()
		}))
		st := h.waitState(StateStarting)
		if d := h.clock.waitTimer(t); d != DefaultStartTimeout {
			t.Fatalf("start timeout %v, want %v", d, DefaultStartTimeout)
		}
		h.clock.Advance(DefaultStartTimeout)
		after := h.waitState(StateBackoff)
		last := after.LastExit
		if last.Cause != CauseNotReady || last.Reason != "not ready within 30s" || last.Signal != "SIGTERM" || !last.Failure() {
			t.Fatalf("last exit %+v", last)
		}
		waitGone(t, st.PID)
		within(t, h.clock.waitTimer(t), 1*s1, DefaultPolicy().Jitter, 30*s1)
		if got := h.states(); !slices.Equal(got, []State{StateStarting, StateBackoff}) {
			t.Fatalf("states %v", got)
		}
	})
	t.Run("error", func(t *testing.T) {
		h := run(t, helperSpec(modeHang), WithReadiness(func(ctx context.Context, pid int) error {
			return errors.New("no registration")
		}))
		last := h.waitState(StateBackoff).LastExit
		if last.Cause != CauseNotReady || last.Reason != "not ready: no registration" {
			t.Fatalf("last exit %+v", last)
		}
	})
}

// A readiness function that returns nil makes the child RUNNING; uptime
// counts from then.
func TestReady(t *testing.T) {
	var gotPID int
	readyCalled := make(chan struct{})
	h := run(t, helperSpec(modeServe), WithReadiness(func(ctx context.Context, pid int) error {
		gotPID = pid
		close(readyCalled)
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return err
		}
		return nil
	}))
	st := h.waitState(StateRunning)
	<-readyCalled
	if gotPID != st.PID || st.PID == 0 {
		t.Fatalf("readiness got pid %d, status %d", gotPID, st.PID)
	}
	if !st.ReadyAt.Equal(h.clock.Now()) || !st.StartedAt.Equal(h.clock.Now()) || st.Uptime(h.clock.Now()) != 0 {
		t.Fatalf("times %+v", st)
	}
	h.clock.Advance(5 * s1)
	if up := h.s.Status().Uptime(h.clock.Now()); up != 5*s1 {
		t.Fatalf("uptime %v", up)
	}
	if ds := h.clock.pending(); len(ds) != 0 {
		t.Fatalf("the start timeout must be stopped once ready: %v", ds)
	}
}

// A child that crashes after running a while counts as a failure.
func TestCrashAfterAWhile(t *testing.T) {
	h := run(t, helperSpec(modeCrashLater))
	h.waitLine("started")
	st := h.waitState(StateBackoff)
	if st.LastExit.Code != 4 || st.LastExit.Cause != CauseExited || !slices.Equal(st.StderrTail, []string{"giving up"}) {
		t.Fatalf("status %+v, exit %+v", st, st.LastExit)
	}
	if got := h.states(); !slices.Equal(got, []State{StateStarting, StateRunning, StateBackoff}) {
		t.Fatalf("states %v", got)
	}
}

// A binary that cannot run fails without STARTING and backs off.
func TestStartError(t *testing.T) {
	spec := helperSpec(modeServe)
	spec.Binary = filepath.Join(t.TempDir(), "missing")
	h := run(t, spec)
	st := h.waitState(StateBackoff)
	if st.LastExit.Cause != CauseStartError || !strings.Contains(st.LastExit.Reason, "no such file") || st.LastExit.Code != -1 {
		t.Fatalf("last exit %+v", st.LastExit)
	}
	if got := h.states(); !slices.Equal(got, []State{StateBackoff}) {
		t.Fatalf("states %v", got)
	}
}

// Every line of both streams arrives, in order per stream, with zerolog
// levels and fields kept, plain lines at info (stdout) or warn (stderr),
// a long line cut and the last partial line flushed.
func TestNoisyLogs(t *testing.T) {
	h := run(t, helperSpec(modeNoisy))
	st := h.waitState(StateBackoff) // exited 0; the fake clock holds the restart
	if st.LastExit.Code != 0 || st.LastExit.Cause != CauseExited {
		t.Fatalf("last exit %+v", st.LastExit)
	}
	var out, errs []Line
	for _, l := range h.gotLines() {
		if l.Stream == Stdout {
			out = append(out, l)
		} else {
			errs = append(errs, l)
		}
	}
	if len(out) != 2*noisyLines+2 || len(errs) != 2*noisyLines+1 {
		t.Fatalf("got %d stdout and %d stderr lines, want %d and %d", len(out), len(errs), 2*noisyLines+2, 2*noisyLines+1)
	}
	check := func(l Line, i int, stream Stream, json bool) {
		t.Helper()
		lv := noisyLevels[i%len(noisyLevels)]
		name, k, plainLevel := "out", "v", PlainStdoutLevel
		if stream == Stderr {
			name, k, plainLevel = "err", "w", PlainStderrLevel
		}
		if !json {
			if l.Level != plainLevel || l.Fields != nil || l.Message != fmt.Sprintf("plain %s %d", name, i) || l.Raw != l.Message {
				t.Fatalf("%s line %d: %+v", stream, i, l)
			}
			return
		}
		f := l.Fields
		if l.Level != lv || l.Message != "json "+name || f["i"] != jsonNumber(i) || f["k"] != k || l.Truncated {
			t.Fatalf("%s json line %d: %+v", stream, i, l)
		}
		for _, key := range []string{"level", "time", "message"} {
			if _, ok := f[key]; ok {
				t.Fatalf("field %q kept in Fields: %v", key, f)
			}
		}
		if stream == Stdout {
			if obj, _ := f["obj"].(map[string]any); obj["b"] != true {
				t.Fatalf("nested field: %v", f)
			}
		}
		if !strings.HasPrefix(l.Raw, `{"level":"`+lv.String()+`"`) || l.Time.IsZero() {
			t.Fatalf("raw %q time %v", l.Raw, l.Time)
		}
	}
	for i := range noisyLines {
		check(out[2*i], i, Stdout, true)
		check(out[2*i+1], i, Stdout, false)
		check(errs[2*i], i, Stderr, true)
		check(errs[2*i+1], i, Stderr, false)
	}
	long, after := out[2*noisyLines], out[2*noisyLines+1]
	if !long.Truncated || len(long.Raw) != MaxLineBytes || strings.Trim(long.Raw, "x") != "" || long.Level != PlainStdoutLevel {
		t.Fatalf("long line: truncated %v, %d bytes", long.Truncated, len(long.Raw))
	}
	if after.Raw != "after long" || after.Truncated {
		t.Fatalf("line after the long one: %+v", after)
	}
	if last := errs[len(errs)-1]; last.Raw != "partial tail" || last.Level != PlainStderrLevel {
		t.Fatalf("partial last line: %+v", last)
	}
	if len(st.StderrTail) != StderrTailLines || st.StderrTail[StderrTailLines-1] != "partial tail" {
		t.Fatalf("stderr tail %q", st.StderrTail)
	}
}

func jsonNumber(i int) json.Number { return json.Number(strconv.Itoa(i)) }

// Stopping sends SIGTERM; a child that exits on it is done with code 0, one
// that ignores it is killed after the grace. Neither is a failure.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		grace  time.Duration
		code   int
		signal string
		line   string // a line seen after SIGTERM
	}{
		{modeGraceful, 0, 0, "", "bye"}, // the default grace: plenty
		{modeIgnoreTerm, 300 * time.Millisecond, -1, "SIGKILL", ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			spec := helperSpec(tc.mode)
			spec.StopGrace = tc.grace
			h := run(t, spec)
			pid := h.waitState(StateRunning).PID
			h.waitLine("armed") // the signal handling is set up
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			st := h.s.Status()
			last := st.LastExit
			if st.State != StateStopped || st.PID != 0 || last.Cause != CauseStopped || last.Failure() || last.Code != tc.code || last.Signal != tc.signal {
				t.Fatalf("status %+v, last exit %+v", st, last)
			}
			if tc.line != "" {
				h.waitLine(tc.line)
			}
			waitGone(t, pid)
			if got := h.states(); !slices.Equal(got, []State{StateStarting, StateRunning, StateStopped}) {
				t.Fatalf("states %v", got)
			}
		})
	}
}

// Restart stops the child gracefully and starts a new one at once; the
// stop is not a failure.
func TestRestart(t *testing.T) {
	h := run(t, helperSpec(modeGraceful))
	first := h.waitState(StateRunning)
	h.waitLine("armed")
	h.s.Restart()
	second := h.waitRunningNot(first.PID)
	if second.Restarts != 1 || second.LastExit.Cause != CauseStopped || second.LastExit.Code != 0 {
		t.Fatalf("after Restart: %+v, last exit %+v", second, second.LastExit)
	}
	waitGone(t, first.PID)
	h.waitLine("bye")
	if got := h.states(); !slices.Equal(got, []State{StateStarting, StateRunning, StateStarting, StateRunning}) {
		t.Fatalf("states %v", got)
	}
	if ds := h.clock.pending(); len(ds) != 0 {
		t.Fatalf("no backoff after Restart: %v", ds)
	}
}

// Restart during BACKOFF starts now, without waiting.
func TestRestartInBackoff(t *testing.T) {
	h := run(t, helperSpec(modeCrashLater))
	h.waitState(StateBackoff)
	h.clock.waitTimer(t)
	h.s.Restart()
	h.waitStatus("second child", func(st Status) bool { return st.Restarts == 1 })
	if got := h.states()[:4]; !slices.Equal(got, []State{StateStarting, StateRunning, StateBackoff, StateStarting}) {
		t.Fatalf("states %v", got)
	}
}

// What the child started in its process group goes when it is stopped.
func TestStopKillsProcessGroup(t *testing.T) {
	h := run(t, helperSpec(modeSpawn))
	var grandchild int
	waitFor(t, "grandchild pid", func() bool {
		for _, l := range h.gotLines() {
			if n, ok := strings.CutPrefix(l.Raw, "grandchild "); ok {
				grandchild, _ = strconv.Atoi(n)
				return true
			}
		}
		return false
	})
	if processGone(grandchild) {
		t.Fatal("grandchild is not running")
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, grandchild)
}

// The pidfile exists while the child runs and is removed when it exits.
func TestPidfile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	h := run(t, helperSpec(modeGraceful), WithStateDir(dir))
	st := h.waitState(StateRunning)
	path := filepath.Join(dir, "helper-1.pid")
	pid, bin, err := readPidfile(path)
	if err != nil || pid != st.PID || bin != self() {
		t.Fatalf("pidfile: pid %d binary %q err %v; child %d binary %q", pid, bin, err, st.PID, self())
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pidfile after exit: %v", err)
	}
}

// Env entries are added to the inherited environment and override it; Dir
// is the working directory.
func TestEnvAndDir(t *testing.T) {
	t.Setenv("PLUGBUS_SUPERVISOR_INHERITED", "yes")
	dir := t.TempDir()
	var seen []string
	h := run(t, Spec{
		Plugin: "env", Instance: "1", Binary: "/bin/sh",
		Args: []string{"-c", `echo "$PLUGBUS_SUPERVISOR_INHERITED $PLUGBUS_SUPERVISOR_EXTRA $HOME"; pwd`},
		Env:  []string{"PLUGBUS_SUPERVISOR_EXTRA=added", "HOME=/elsewhere"},
		Dir:  dir,
	})
	h.waitState(StateBackoff)
	for _, l := range h.gotLines() {
		seen = append(seen, l.Raw)
	}
	real, _ := filepath.EvalSymlinks(dir)
	if !slices.Equal(seen, []string{"yes added /elsewhere", real}) {
		t.Fatalf("child saw %q", seen)
	}
}

func TestRunTwice(t *testing.T) {
	h := run(t, helperSpec(modeServe))
	h.waitState(StateRunning)
	if err := h.s.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Run: %v", err)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	// After Run returned, the supervisor may run again, afresh.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	st := h.waitState(StateRunning)
	if st.Restarts != 0 {
		t.Fatalf("restarts %d in a new Run", st.Restarts)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*Spec)
	}{
		{"Plugin", func(s *Spec) { s.Plugin = "" }},
		{"Plugin", func(s *Spec) { s.Plugin = "a/b" }},
		{"Plugin", func(s *Spec) { s.Plugin = "-x" }},
		{"Instance", func(s *Spec) { s.Instance = "" }},
		{"Instance", func(s *Spec) { s.Instance = "a-b" }},
		{"Binary", func(s *Spec) { s.Binary = "" }},
		{"StartTimeout", func(s *Spec) { s.StartTimeout = -1 }},
		{"StopGrace", func(s *Spec) { s.StopGrace = -1 }},
		{"Env[1]", func(s *Spec) { s.Env = []string{"A=1", "=2"} }},
		{"Env[0]", func(s *Spec) { s.Env = []string{"NOEQUALS"} }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			s := helperSpec(modeServe)
			tc.edit(&s)
			err := s.Validate()
			var fe *FieldError
			if !errors.Is(err, ErrInvalidSpec) || !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
			if _, err := New(s); !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("New: %v", err)
			}
		})
	}
	d := Spec{Plugin: "p", Instance: "i", Binary: "b"}.WithDefaults()
	if d.StartTimeout != DefaultStartTimeout || d.StopGrace != DefaultStopGrace {
		t.Fatalf("defaults %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsRejectNil(t *testing.T) {
	for name, opt := range map[string]Option{
		"WithReadiness": WithReadiness(nil),
		"WithLines":     WithLines(nil),
		"WithOnChange":  WithOnChange(nil),
		"WithStateDir":  WithStateDir(""),
		"WithClock":     WithClock(nil),
		"option 0":      nil,
	} {
		var fe *FieldError
		if _, err := New(helperSpec(modeServe), opt); !errors.Is(err, ErrInvalidOption) || !errors.As(err, &fe) || fe.Field != name {
			t.Errorf("%s: %v", name, err)
		}
	}
}
