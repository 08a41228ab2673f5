package sdk

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the SDK itself. Match them with errors.Is.
var (
	// ErrInvalidManifest is wrapped by New when the manifest fails the local
	// checks.
	ErrInvalidManifest = errors.New("invalid manifest")
	// ErrInvalidOption is wrapped by New when an Option rejects its value.
	ErrInvalidOption = errors.New("invalid option")
	// ErrAlreadyRunning is returned by Run when the plugin is already running
	// (or has run): a Plugin runs once.
	ErrAlreadyRunning = errors.New("plugin is already running")
	// ErrRegister is wrapped by Run when the broker refuses the registration
	// for a reason that retrying cannot fix (an invalid manifest, a conflict).
	ErrRegister = errors.New("register plugin")
)

// PermanentError marks an event-handling failure that redelivery cannot fix.
// The SDK terminates the event with the error's message as the reason, and
// the broker moves it to the dead-letter stream. Create it with [Permanent].
type PermanentError struct {
	Err error
}

// Error returns the wrapped error's message.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent: the event is not redelivered. Permanent
// returns nil when err is nil, so `return sdk.Permanent(err)` is safe.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for the event to be redelivered after Delay instead of
// after the manifest's next backoff delay. Create it with [RetryAfter].
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

// Error says when the retry happens and why.
func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry after %s", e.Delay)
	}
	return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err)
}

// Unwrap returns the wrapped error, if any.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter asks for redelivery of the event after d (for example the
// Retry-After of a rate-limited HTTP call). err may be nil; the result never
// is. A negative d counts as zero.
func RetryAfter(d time.Duration, err error) error {
	if d < 0 {
		d = 0
	}
	return &RetryAfterError{Delay: d, Err: err}
}

// RetryDelay returns the delay asked for with [RetryAfter] in err's chain.
func RetryDelay(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.Delay, true
	}
	return 0, false
}
