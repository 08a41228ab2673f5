package supervisor

import (
	"slices"
	"time"
)

// State is where an instance is in its lifecycle. See the package doc for
// the transitions.
type State string

// The states of an instance.
const (
	// StateStarting: the child was started and is not ready yet.
	StateStarting State = "STARTING"
	// StateRunning: the child is ready and running.
	StateRunning State = "RUNNING"
	// StateBackoff: the child exited or failed to start; the next start
	// waits for the backoff (Status.RetryAt).
	StateBackoff State = "BACKOFF"
	// StateFailed: too many failures in the crash-loop window; no child runs
	// until Restart is called.
	StateFailed State = "FAILED"
	// StateStopped: Run is not running (before Run, and after it returned).
	StateStopped State = "STOPPED"
)

// ExitCause says why a child's run ended. Use it rather than Exit.Reason to
// decide anything: the reason is text for people.
type ExitCause string

// The causes of an Exit.
const (
	// CauseExited: the child exited (or was killed) on its own. A failure.
	CauseExited ExitCause = "exited"
	// CauseStartError: the binary could not be started at all. A failure.
	CauseStartError ExitCause = "start-error"
	// CauseNotReady: the readiness function failed or did not return nil
	// within the start timeout, and the child was stopped. A failure.
	CauseNotReady ExitCause = "not-ready"
	// CauseStopped: the supervisor stopped the child (Run's context ended,
	// or Restart). Not a failure.
	CauseStopped ExitCause = "stopped"
)

// Exit describes how a child's run ended.
type Exit struct {
	Cause ExitCause
	// Code is the exit code, or -1 when the child was killed by a signal or
	// never ran.
	Code int
	// Signal is the name of the signal that killed the child ("SIGKILL"),
	// empty when it exited with a code.
	Signal string
	// Time is when the supervisor saw the run end (from its Clock).
	Time time.Time
	// Reason says it for people: "exited with code 3", "killed by SIGKILL",
	// "not ready within 30s", "start: fork/exec ...: no such file or
	// directory".
	Reason string
}

// Failure reports whether the exit counts against the restart policy.
func (e Exit) Failure() bool { return e.Cause != CauseStopped }

// Status is a snapshot of one instance. Times come from the supervisor's
// Clock.
type Status struct {
	Plugin   string
	Instance string
	State    State
	// PID of the current child, 0 when none runs.
	PID int
	// Restarts counts the children started after the first one in this
	// Run, for any reason (a failure or Restart). Attempts whose exec
	// failed start no child and are not counted.
	Restarts int
	// StartedAt is when the current (or, with no child, the last) child was
	// started; zero before the first start.
	StartedAt time.Time
	// ReadyAt is when the current child became RUNNING; zero when no child
	// is RUNNING. See Uptime.
	ReadyAt time.Time
	// RetryAt is when the next start is due, in BACKOFF; zero otherwise.
	RetryAt time.Time
	// LastExit is the end of the last child's run, nil before the first.
	LastExit *Exit
	// StderrTail holds the last stderr lines (at most StderrTailLines) of
	// the current or last child, oldest first.
	StderrTail []string
	// FailureReason says why the instance is FAILED; empty otherwise.
	FailureReason string
}

// Uptime is how long the current child has been RUNNING at now (from the
// same Clock as the supervisor, usually time.Now()); 0 when none is.
func (s Status) Uptime(now time.Time) time.Duration {
	if s.ReadyAt.IsZero() {
		return 0
	}
	return now.Sub(s.ReadyAt)
}

// clone returns a copy sharing nothing with s.
func (s Status) clone() Status {
	if s.LastExit != nil {
		e := *s.LastExit
		s.LastExit = &e
	}
	s.StderrTail = slices.Clone(s.StderrTail)
	return s
}
