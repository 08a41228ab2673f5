package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// childEnd is how one child's run ended.
type childEnd struct {
	exit    Exit
	ran     time.Duration // time RUNNING, 0 if it never was
	restart bool          // stopped for Restart
}

// runChild starts one child and returns when it is gone: it exited, it
// failed to start or become ready, or it was stopped because ctx ended or
// Restart was called. starts counts the earlier starts of this Run.
func (s *Supervisor) runChild(ctx context.Context, starts int) childEnd {
	clock := s.o.clock
	childCtx, stop := context.WithCancel(context.Background())
	defer stop()
	cmd := exec.CommandContext(childCtx, s.spec.Binary, s.spec.Args...)
	cmd.Dir = s.spec.Dir
	cmd.Env = append(os.Environ(), s.spec.Env...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = s.spec.StopGrace
	stdout := &lineWriter{stream: Stdout, now: time.Now, emit: s.emit}
	stderr := &lineWriter{stream: Stderr, now: time.Now, emit: s.emit}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	s.mu.Lock()
	s.status.StderrTail = nil // the tail is the new child's from here on
	s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return childEnd{exit: Exit{Cause: CauseStartError, Code: -1, Time: clock.Now(), Reason: "start: " + err.Error()}}
	}
	pid := cmd.Process.Pid
	startedAt := clock.Now()
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit is read from cmd.ProcessState
		close(done)
	}()
	// end stops the child if it still runs and reports how its run ended.
	end := func(cause ExitCause, reason string, readyAt time.Time, restart bool) childEnd {
		stop()
		<-done
		stdout.Flush()
		stderr.Flush()
		// Whatever the child left in its process group goes with it. The
		// group id cannot have been reused: Linux keeps a pid number
		// while a group still uses it, and an empty group gives ESRCH.
		_ = signalGroup(pid, syscall.SIGKILL)
		e := exitOf(cmd.ProcessState, cause, reason)
		e.Time = clock.Now()
		if s.pidfile != "" {
			_ = removePidfile(s.pidfile)
		}
		var ran time.Duration
		if !readyAt.IsZero() {
			ran = e.Time.Sub(readyAt)
		}
		return childEnd{exit: e, ran: ran, restart: restart}
	}
	if s.pidfile != "" {
		if err := writePidfile(s.pidfile, pid, binaryOf(pid, cmd.Path)); err != nil {
			return end(CauseStartError, err.Error(), time.Time{}, false)
		}
	}
	s.transition(func(st *Status) {
		st.State, st.PID, st.StartedAt = StateStarting, pid, startedAt
		st.Restarts = starts
	})

	var (
		readyAt     time.Time
		ready       chan error       // nil once ready, or without a readiness check
		timeout     <-chan time.Time // the start timeout while not ready
		stopTimeout = func() {}
	)
	if s.o.ready != nil {
		readyCtx, cancelReady := context.WithCancel(ctx)
		defer cancelReady()
		ready = make(chan error, 1)
		go func() { ready <- s.o.ready(readyCtx, pid) }()
		timer := clock.NewTimer(s.spec.StartTimeout)
		stopTimeout = func() { timer.Stop() }
		defer stopTimeout()
		timeout = timer.C()
	} else {
		readyAt = s.markRunning(pid)
	}
	for {
		select {
		case err := <-ready:
			ready, timeout = nil, nil
			stopTimeout()
			if err != nil {
				select {
				case <-done: // it exited: that is the failure
					return end(CauseExited, "", time.Time{}, false)
				default:
				}
				if ctx.Err() != nil { // the check ended because Run is stopping
					return end(CauseStopped, "", time.Time{}, false)
				}
				return end(CauseNotReady, "not ready: "+err.Error(), time.Time{}, false)
			}
			readyAt = s.markRunning(pid)
		case <-timeout:
			return end(CauseNotReady, fmt.Sprintf("not ready within %v", s.spec.StartTimeout), time.Time{}, false)
		case <-done:
			return end(CauseExited, "", readyAt, false)
		case <-ctx.Done():
			return end(CauseStopped, "", readyAt, false)
		case <-s.restart:
			return end(CauseStopped, "", readyAt, true)
		}
	}
}

// markRunning moves the instance to RUNNING and returns when it got there.
func (s *Supervisor) markRunning(pid int) time.Time {
	now := s.o.clock.Now()
	s.transition(func(st *Status) {
		st.State, st.PID, st.ReadyAt = StateRunning, pid, now
	})
	return now
}

// exitOf describes a finished process. An empty reason is made from the
// exit status; a stop says so first.
func exitOf(ps *os.ProcessState, cause ExitCause, reason string) Exit {
	e := Exit{Cause: cause, Code: -1, Reason: reason}
	status := "exit status unknown"
	if ps != nil {
		e.Code = ps.ExitCode()
		status = fmt.Sprintf("exited with code %d", e.Code)
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = unix.SignalName(ws.Signal())
			if e.Signal == "" {
				e.Signal = ws.Signal().String()
			}
			status = "killed by " + e.Signal
		}
	}
	switch {
	case e.Reason != "":
	case cause == CauseStopped:
		e.Reason = "stopped, " + status
	default:
		e.Reason = status
	}
	return e
}

// binaryOf is what a pidfile records as the child's binary: the kernel's
// path of its executable, or the absolute path it was started with.
func binaryOf(pid int, path string) string {
	if b, err := processBinary(pid); err == nil {
		return b
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// signalGroup sends sig to the process group led by pid. A group that is
// gone already is reported as os.ErrProcessDone.
func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
