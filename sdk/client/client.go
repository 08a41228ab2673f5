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
package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

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
	nc      *nats.Conn
	conn    func() *nats.Conn
	prefix  string
	timeout time.Duration
	// err is the first option error; every call returns it.
	err error
}

type options struct {
	prefix  string
	timeout time.Duration
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
	o := options{prefix: wire.DefaultPrefix, timeout: DefaultTimeout}
	c := &Client{}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil && c.err == nil {
			c.err = err
		}
	}
	c.prefix, c.timeout = o.prefix, o.timeout
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
	return wire.Call(ctx, nc, wire.APISubject(c.prefix, endpoint), req, resp)
}
