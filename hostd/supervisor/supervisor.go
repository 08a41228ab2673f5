package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// StderrTailLines is how many of the last stderr lines Status keeps.
const StderrTailLines = 20

// Supervisor keeps one child process running. Create it with New and call
// Run; Status and Restart may be called from any goroutine.
type Supervisor struct {
	spec    Spec // with defaults
	o       options
	pidfile string // empty without a state dir

	restart chan struct{} // one pending Restart request
	running atomic.Bool   // Run is active

	mu     sync.Mutex
	status Status

	lineMu sync.Mutex // serializes o.lines
}

// New checks spec and the options and returns a Supervisor in STOPPED. It
// has no side effects: nothing starts until Run.
func New(spec Spec, opts ...Option) (*Supervisor, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	s := &Supervisor{
		spec:    spec.WithDefaults(),
		o:       o,
		restart: make(chan struct{}, 1),
		status:  Status{Plugin: spec.Plugin, Instance: spec.Instance, State: StateStopped},
	}
	if o.stateDir != "" {
		s.pidfile = filepath.Join(o.stateDir, spec.pidfileName())
	}
	return s, nil
}

// Spec returns the spec the supervisor runs, with defaults applied.
func (s *Supervisor) Spec() Spec { return s.spec }

// Status returns a snapshot of the instance.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.clone()
}

// Restart stops the current child gracefully (if one runs) and starts a new
// one now, without waiting for a backoff. It clears FAILED and starts the
// policy afresh: the backoff is back at its initial wait and the failures
// in the window are forgotten. It does not block, and requests made before
// the new child starts are merged into one. Without an active Run it does
// nothing: Run always starts a fresh child.
func (s *Supervisor) Restart() {
	select {
	case s.restart <- struct{}{}:
	default:
	}
}

// Run keeps the child running until ctx ends, then stops it gracefully
// (SIGTERM to its process group, then SIGKILL after the stop grace), and
// returns nil with the state STOPPED. It returns an error, before starting
// anything, only when it cannot work at all: another Run is active
// (ErrAlreadyRunning), the state directory cannot be created, or a child
// that an earlier supervisor of this instance left (see ReapOrphans) cannot
// be identified or killed. A Supervisor may run again after Run returned;
// each Run starts with a fresh policy and restart count.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer s.running.Store(false)
	if s.pidfile != "" {
		if err := os.MkdirAll(s.o.stateDir, 0o755); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		// A child left by an earlier supervisor of this instance (one that
		// was killed) would run twice.
		if pid, err := reapPidfile(s.pidfile); err != nil {
			return err
		} else if pid != 0 {
			if err := awaitGone([]int{pid}, reapWait); err != nil {
				return err
			}
		}
	}
	select { // a Restart before Run is satisfied by the first start
	case <-s.restart:
	default:
	}
	s.mu.Lock()
	s.status.Restarts, s.status.FailureReason = 0, ""
	s.mu.Unlock()
	policy := newRestartPolicy(s.o.policy)
	for starts := 0; ; starts++ {
		if ctx.Err() != nil {
			s.stopped()
			return nil
		}
		end := s.runChild(ctx, starts)
		s.mu.Lock()
		s.status.LastExit = &end.exit
		s.mu.Unlock()
		if ctx.Err() != nil {
			s.stopped()
			return nil
		}
		if end.restart {
			policy.reset()
			continue
		}
		wait, giveUp := policy.failed(end.exit.Time, end.ran)
		if giveUp {
			reason := fmt.Sprintf("%d failures within %v, last: %s", s.o.policy.MaxFailures, s.o.policy.FailureWindow, end.exit.Reason)
			s.transition(func(st *Status) {
				st.State, st.FailureReason = StateFailed, reason
			})
			select {
			case <-ctx.Done():
				s.stopped()
				return nil
			case <-s.restart:
				policy.reset()
				continue
			}
		}
		retryAt := s.o.clock.Now().Add(wait)
		s.transition(func(st *Status) {
			st.State, st.RetryAt = StateBackoff, retryAt
		})
		timer := s.o.clock.NewTimer(wait)
		select {
		case <-timer.C():
		case <-s.restart:
			timer.Stop()
			policy.reset()
		case <-ctx.Done():
			timer.Stop()
			s.stopped()
			return nil
		}
	}
}

// stopped records the end of Run.
func (s *Supervisor) stopped() {
	s.transition(func(st *Status) { st.State = StateStopped })
}

// transition applies f, which sets the new State, to the status under the
// lock and reports the new status to the change function. Fields that
// belong to other states are cleared.
func (s *Supervisor) transition(f func(*Status)) {
	s.mu.Lock()
	f(&s.status)
	st := &s.status
	if st.State != StateBackoff {
		st.RetryAt = time.Time{}
	}
	if st.State != StateFailed {
		st.FailureReason = ""
	}
	if st.State != StateRunning {
		st.ReadyAt = time.Time{}
	}
	if st.State != StateStarting && st.State != StateRunning {
		st.PID = 0
	}
	snap := st.clone()
	s.mu.Unlock()
	if s.o.onChange != nil {
		s.o.onChange(snap)
	}
}

// emit passes a line on, keeping stderr lines in the tail.
func (s *Supervisor) emit(l Line) {
	if l.Stream == Stderr {
		s.mu.Lock()
		if len(s.status.StderrTail) == StderrTailLines {
			s.status.StderrTail = append(s.status.StderrTail[:0], s.status.StderrTail[1:]...)
		}
		s.status.StderrTail = append(s.status.StderrTail, l.Raw)
		s.mu.Unlock()
	}
	s.lineMu.Lock()
	defer s.lineMu.Unlock()
	s.o.lines(l)
}
