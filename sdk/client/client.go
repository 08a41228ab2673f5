// Package client is a typed Go client for the plugbus broker API.
//
// Every broker endpoint is a NATS request/reply subject
// (wire.APISubject(prefix, endpoint)) that takes and returns JSON bodies of
// the types named next to the endpoint constants in package schemas. Client
// has one method per endpoint plus [Client.Call] for anything else.
//
// Errors from the broker come back as *schemas.Error, so callers branch with
// errors.Is:
//
//	if errors.Is(err, schemas.ErrNotFound) { … }
//	if errors.Is(err, schemas.ErrNoResponders) { /* broker not running */ }
//
// A call whose context has no deadline gets the client's default timeout
// (10s, see [WithTimeout]); a call that runs out of time fails with
// schemas.ErrTimeout.
//
// A call whose context holds an OpenTelemetry span carries its trace
// context to the broker (the traceparent and tracestate headers), so the
// broker's spans, the hook steps and the events of the operation join the
// caller's trace (docs/tracing.md).
package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// DefaultTimeout bounds a call whose context has no deadline, unless
// WithTimeout says otherwise.
const DefaultTimeout = 10 * time.Second

// ErrInvalidOption is wrapped by the error every call of a Client returns
// when one of the options given to New was rejected.
var ErrInvalidOption = errors.New("client: invalid option")

// ErrNotConnected is wrapped by the error of a call made through a client
// from NewFunc while it has no connection yet.
var ErrNotConnected = errors.New("client: not connected to NATS yet")

// Client calls the broker API over a NATS connection. It is safe for
// concurrent use; it does not own the connection (closing it is up to the
// caller).
type Client struct {
	nc       *nats.Conn
	conn     func() *nats.Conn
	prefix   string
	timeout  time.Duration
	retryFor time.Duration
	// err is the first option error; every call returns it.
	err error
}

type options struct {
	prefix   string
	timeout  time.Duration
	retryFor time.Duration
}

// DefaultRetryFor is how long a call is retried while nothing answers.
const DefaultRetryFor = 5 * time.Second

// WithRetryFor sets how long a call is retried, with backoff, while
// nothing answers it (a broker restarting; default DefaultRetryFor; 0
// turns retrying off). Mutating calls carry an idempotency key, so a
// retry never does a thing twice.
func WithRetryFor(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: retry duration %s is negative", ErrInvalidOption, d)
		}
		o.retryFor = d
		return nil
	}
}

// Option configures a Client. An option that rejects its input makes every
// call of the Client fail with an error wrapping ErrInvalidOption.
type Option func(*options) error

// WithPrefix sets the subject prefix of the bus (default "plugbus"); see
// wire.ValidatePrefix for the rule.
func WithPrefix(prefix string) Option {
	return func(o *options) error {
		if err := wire.ValidatePrefix(prefix); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		o.prefix = prefix
		return nil
	}
}

// WithTimeout sets how long a call may take when its context has no deadline
// (default 10s). Zero disables the default: a call then waits as long as its
// context allows. A context that has a deadline is always used as is.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: timeout %s is negative", ErrInvalidOption, d)
		}
		o.timeout = d
		return nil
	}
}

// New returns a Client that calls the broker over nc. nc must not be nil.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := newClient(opts)
	c.nc = nc
	return c
}

// NewFunc returns a Client that takes its connection from conn at every
// call, for code that must hold a client before the connection exists (a
// plugin's setup). A call while conn returns nil fails with an error
// wrapping ErrNotConnected.
func NewFunc(conn func() *nats.Conn, opts ...Option) *Client {
	c := newClient(opts)
	c.conn = conn
	return c
}

func newClient(opts []Option) *Client {
	o := options{prefix: wire.DefaultPrefix, timeout: DefaultTimeout, retryFor: DefaultRetryFor}
	c := &Client{}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil && c.err == nil {
			c.err = err
		}
	}
	c.prefix, c.timeout, c.retryFor = o.prefix, o.timeout, o.retryFor
	return c
}

// Prefix returns the subject prefix the client calls under.
func (c *Client) Prefix() string { return c.prefix }

// Call sends req as JSON to the broker API endpoint (one of the schemas.API*
// constants, such as schemas.APIJobsDeploy) and decodes the reply into resp,
// which may be nil. An error reply is returned as a *schemas.Error.
func (c *Client) Call(ctx context.Context, endpoint string, req, resp any) error {
	nc, err := c.connection(endpoint)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	// A mutating call carries an idempotency key, so retrying it is safe:
	// the broker answers a repeat with the first reply.
	var hdr nats.Header
	if schemas.Idempotent(endpoint) {
		key, _ := ctx.Value(idempotencyKeyCtx{}).(string)
		if key == "" {
			key = nuid.Next()
		}
		hdr = nats.Header{wire.HeaderIdempotencyKey: []string{key}}
	}
	subject := wire.APISubject(c.prefix, endpoint)
	// Nothing answering (a broker restarting, a connection reconnecting)
	// is retried with backoff, for RetryFor at most and within the call's
	// deadline.
	var last error
	rctx := ctx
	{
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, c.retryFor)
		defer cancel()
	}
	_, err = backoff.Retry(rctx, func() (struct{}, error) {
		last = wire.CallHeader(ctx, nc, subject, hdr, req, resp)
		if last != nil && !retryable(last) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.2,
		Multiplier: 2, MaxInterval: time.Second}), backoff.WithMaxElapsedTime(0))
	if err != nil && last != nil {
		// The time to retry ran out: the last answer, not the deadline.
		return last
	}
	return err
}

// retryable reports whether a call failed before any broker saw it.
func retryable(err error) bool {
	return errors.Is(err, schemas.ErrNoResponders) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrConnectionDraining)
}

type idempotencyKeyCtx struct{}

// WithIdempotencyKey makes the mutating calls made with ctx carry key as
// their idempotency key instead of a fresh one: a plugin that fires an
// alert from an event handler passes the event id, so a redelivered event
// fires it once.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKeyCtx{}, key)
}
