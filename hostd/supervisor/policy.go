package supervisor

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy says when a child that exited is started again. Start from
// DefaultPolicy and change fields; WithPolicy validates the result.
type Policy struct {
	// InitialBackoff is the wait before the first restart after a failure,
	// and the wait again once the backoff is reset.
	InitialBackoff time.Duration
	// MaxBackoff caps every wait, jitter included.
	MaxBackoff time.Duration
	// Multiplier grows the wait after each failure (2 doubles it).
	Multiplier float64
	// Jitter spreads each wait randomly by ±Jitter of it (0.2 = ±20%) so
	// that many instances failing together do not restart together. 0 means
	// exact waits.
	Jitter float64
	// HealthyPeriod is how long a child must have been RUNNING when it exits
	// for the backoff to start again at InitialBackoff.
	HealthyPeriod time.Duration
	// MaxFailures failures within FailureWindow put the instance in FAILED,
	// where it stays until Restart. 0 means never give up.
	MaxFailures int
	// FailureWindow is the sliding window MaxFailures is counted in.
	FailureWindow time.Duration
}

// DefaultPolicy returns the policy used when no WithPolicy option is given:
// waits of 1s doubling to 30s with ±20% jitter, reset after 60s RUNNING, and
// FAILED after 5 failures within 60s.
func DefaultPolicy() Policy {
	return Policy{
		InitialBackoff: time.Second,
		MaxBackoff:     30 * time.Second,
		Multiplier:     2,
		Jitter:         0.2,
		HealthyPeriod:  60 * time.Second,
		MaxFailures:    5,
		FailureWindow:  60 * time.Second,
	}
}

// Validate checks every field. The error is a *FieldError wrapping
// ErrInvalidOption that names the bad field.
func (p Policy) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Kind: ErrInvalidOption, Field: "Policy." + field, Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case p.InitialBackoff <= 0:
		return bad("InitialBackoff", "%v must be positive", p.InitialBackoff)
	case p.MaxBackoff < p.InitialBackoff:
		return bad("MaxBackoff", "%v must not be less than InitialBackoff %v", p.MaxBackoff, p.InitialBackoff)
	case !(p.Multiplier >= 1):
		return bad("Multiplier", "%v must be at least 1", p.Multiplier)
	case !(p.Jitter >= 0 && p.Jitter < 1):
		return bad("Jitter", "%v must be in [0, 1)", p.Jitter)
	case p.HealthyPeriod <= 0:
		return bad("HealthyPeriod", "%v must be positive", p.HealthyPeriod)
	case p.MaxFailures < 0:
		return bad("MaxFailures", "%d must not be negative", p.MaxFailures)
	case p.MaxFailures > 0 && p.FailureWindow <= 0:
		return bad("FailureWindow", "%v must be positive when MaxFailures is set", p.FailureWindow)
	}
	return nil
}

// restartPolicy is the state of one Policy over a Run: the backoff and the
// recent failures. It is used by the Run goroutine only.
type restartPolicy struct {
	p        Policy
	backoff  *backoff.ExponentialBackOff
	failures []time.Time // within the window, oldest first
}

func newRestartPolicy(p Policy) *restartPolicy {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialBackoff,
		RandomizationFactor: p.Jitter,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxBackoff,
	}
	b.Reset()
	return &restartPolicy{p: p, backoff: b}
}

// reset forgets the failures and starts the backoff again (Restart).
func (r *restartPolicy) reset() {
	r.failures = r.failures[:0]
	r.backoff.Reset()
}

// failed records a failure at now of a child that had been RUNNING for ran
// (0 if it never got there). It returns the wait before the next start, or
// giveUp when the crash-loop limit is reached.
func (r *restartPolicy) failed(now time.Time, ran time.Duration) (wait time.Duration, giveUp bool) {
	if ran >= r.p.HealthyPeriod {
		r.backoff.Reset()
	}
	if r.p.MaxFailures > 0 {
		cut := 0
		for cut < len(r.failures) && now.Sub(r.failures[cut]) >= r.p.FailureWindow {
			cut++
		}
		r.failures = append(r.failures[cut:], now)
		if len(r.failures) >= r.p.MaxFailures {
			return 0, true
		}
	}
	return min(r.backoff.NextBackOff(), r.p.MaxBackoff), false
}
