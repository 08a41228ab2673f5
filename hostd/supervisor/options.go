package supervisor

import (
	"context"
	"fmt"
)

// ReadyFunc reports when a started child is ready, e.g. when the plugin has
// registered on the bus. It should block until the child is ready (return
// nil) or ctx is done (return ctx.Err()); any error fails the start at once.
// ctx ends at the start timeout, when the child exits, and when the
// supervisor stops.
type ReadyFunc func(ctx context.Context, pid int) error

type options struct {
	policy   Policy
	ready    ReadyFunc
	lines    func(Line)
	onChange func(Status)
	stateDir string
	clock    Clock
}

func defaultOptions() options {
	return options{
		policy: DefaultPolicy(),
		lines:  func(Line) {},
		clock:  RealClock(),
	}
}

// Option configures a Supervisor in New. An option that rejects its value
// makes New fail with an error wrapping ErrInvalidOption.
type Option func(*options) error

func invalidOption(field, problem string) error {
	return &FieldError{Kind: ErrInvalidOption, Field: field, Problem: problem}
}

// WithPolicy sets the restart policy (default DefaultPolicy()). It must pass
// Policy.Validate.
func WithPolicy(p Policy) Option {
	return func(o *options) error {
		if err := p.Validate(); err != nil {
			return err
		}
		o.policy = p
		return nil
	}
}

// WithReadiness sets the readiness check run after each start. Without one,
// a child is RUNNING as soon as it has been started.
func WithReadiness(f ReadyFunc) Option {
	return func(o *options) error {
		if f == nil {
			return invalidOption("WithReadiness", "function must not be nil")
		}
		o.ready = f
		return nil
	}
}

// WithLines sets the function each stdout and stderr line of the child is
// passed to (default: dropped; Status still keeps the stderr tail). Calls
// are serialized, in the order the lines were read. A slow function slows
// the child down: its writes block until the lines are taken. Relog makes
// one that writes to a zerolog.Logger.
func WithLines(f func(Line)) Option {
	return func(o *options) error {
		if f == nil {
			return invalidOption("WithLines", "function must not be nil")
		}
		o.lines = f
		return nil
	}
}

// WithOnChange sets a function called with the new Status on every state
// transition, including a new child in STARTING right after one was
// STARTING (Restart). Calls come from Run's goroutine, in order; the
// function must not block for long and must not call Run. Status and
// Restart may be called from it.
func WithOnChange(f func(Status)) Option {
	return func(o *options) error {
		if f == nil {
			return invalidOption("WithOnChange", "function must not be nil")
		}
		o.onChange = f
		return nil
	}
}

// WithStateDir makes the supervisor keep a pidfile "<plugin>-<instance>.pid"
// in dir while its child runs (see ReapOrphans). Run creates dir if needed.
func WithStateDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return invalidOption("WithStateDir", "directory must not be empty")
		}
		o.stateDir = dir
		return nil
	}
}

// WithClock sets the clock of the restart policy and the start timeout
// (default RealClock()).
func WithClock(c Clock) Option {
	return func(o *options) error {
		if c == nil {
			return invalidOption("WithClock", "clock must not be nil")
		}
		o.clock = c
		return nil
	}
}

// apply runs the options over the defaults.
func applyOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for i, opt := range opts {
		if opt == nil {
			return o, invalidOption(fmt.Sprintf("option %d", i), "must not be nil")
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}
