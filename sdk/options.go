package sdk

import (
	"fmt"
	"maps"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/wire"
)

// Defaults applied by New.
const (
	// DefaultRegisterTimeout bounds one register request. The broker runs
	// init, config and verify before it replies, so it is generous.
	DefaultRegisterTimeout = 30 * time.Second
	// DefaultHandlerTimeout bounds one init, config, verify or action
	// handler call.
	DefaultHandlerTimeout = 30 * time.Second
	// DefaultAckWait is the event handler deadline when the consumer does not
	// say otherwise.
	DefaultAckWait = 30 * time.Second
	// DefaultHookConcurrency is how many hook calls an instance handles at
	// once.
	DefaultHookConcurrency = 16
	// DefaultActionConcurrency is how many action calls an instance
	// handles at once.
	DefaultActionConcurrency = 16
	// DefaultRetryDelay is the redelivery delay after a failed event when the
	// manifest lists no backoff.
	DefaultRetryDelay = time.Second
)

type options struct {
	prefix            string
	logger            zerolog.Logger
	config            map[string]any
	registerTimeout   time.Duration
	handlerTimeout    time.Duration
	hookConcurrency   int
	actionConcurrency int
	actionAcceptAfter time.Duration
	eventBuffer       int
	host, instance    string
	tracer            wire.Tracer
}

func defaultOptions() options {
	return options{
		prefix:            wire.DefaultPrefix,
		logger:            zerolog.Nop(),
		registerTimeout:   DefaultRegisterTimeout,
		handlerTimeout:    DefaultHandlerTimeout,
		hookConcurrency:   DefaultHookConcurrency,
		actionConcurrency: DefaultActionConcurrency,
		actionAcceptAfter: DefaultActionAcceptAfter,
		eventBuffer:       DefaultEventBuffer,
	}
}

// Option configures a Plugin in New. An option that rejects its value makes
// New fail with an error wrapping ErrInvalidOption.
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

// WithLogger sets the logger (default: no logs). The SDK adds the fields
// plugin and instance to it.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}

// WithConfig sets the initial configuration sent with the registration. The
// broker uses it only when it holds no configuration for the plugin yet.
func WithConfig(cfg map[string]any) Option {
	return func(o *options) error {
		o.config = maps.Clone(cfg)
		return nil
	}
}

// WithRegisterTimeout bounds one register request (default 30s).
func WithRegisterTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: register timeout %s must be positive", ErrInvalidOption, d)
		}
		o.registerTimeout = d
		return nil
	}
}

// WithHandlerTimeout bounds each init, config and verify handler call: the
// handler's context ends after d (default 30s). An action handler's context
// ends at the action's deadline (its manifest timeout, or the broker's
// action timeout) instead; d bounds it only when the broker sends no
// deadline (one without long-running actions).
func WithHandlerTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: handler timeout %s must be positive", ErrInvalidOption, d)
		}
		o.handlerTimeout = d
		return nil
	}
}

// DefaultEventBuffer is how many events an instance pulls ahead by default.
const DefaultEventBuffer = 256

// WithEventBuffer sets how many events an instance pulls ahead of its
// handler (default 256). A larger buffer delivers faster; but events are
// handled one at a time per instance, so buffer × handler time must stay
// well below the ack wait, or buffered events are redelivered before
// their turn. With slow handlers, lower it (or raise ack_wait).
func WithEventBuffer(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: event buffer %d must be at least 1", ErrInvalidOption, n)
		}
		o.eventBuffer = n
		return nil
	}
}

// WithHookConcurrency sets how many hook calls the instance handles at once
// (default 16); more wait for a free slot. Hook handlers must then be safe
// for concurrent use. Actions and events are not affected.
func WithHookConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: hook concurrency %d must be at least 1", ErrInvalidOption, n)
		}
		o.hookConcurrency = n
		return nil
	}
}

// WithActionConcurrency sets how many action calls the instance handles at
// once (default 16); more wait for a free slot. An action the instance
// accepted (WithActionAcceptAfter) runs on without holding a slot, so
// action handlers must be safe for concurrent use: two actions on one
// machine may run at the same time once the first was accepted.
func WithActionConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: action concurrency %d must be at least 1", ErrInvalidOption, n)
		}
		o.actionConcurrency = n
		return nil
	}
}

// WithActionAcceptAfter sets how long an action handler may run before
// the instance answers the broker that it accepted the action (default
// [DefaultActionAcceptAfter]; zero answers accepted at once): an action
// that ends sooner is answered with its result in one round trip, a longer
// one is reported on actions.complete when it ends, so the broker holds no
// request open for it (docs/protocol.md#actions).
func WithActionAcceptAfter(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: action accept window %s is negative", ErrInvalidOption, d)
		}
		o.actionAcceptAfter = d
		return nil
	}
}

// WithHostInstance names the host the instance runs on and its id there;
// both go into the instance's service metadata, so hostd and operators can
// tell instances apart (`nats micro info`). sdk.Main sets them from
// $PLUGBUS_HOST and $PLUGBUS_INSTANCE, which hostd provides.
func WithHostInstance(host, instance string) Option {
	return func(o *options) error {
		o.host, o.instance = host, instance
		return nil
	}
}

// WithTracerProvider makes the plugin start OpenTelemetry spans from tp:
// one per init, config, verify, action and hook call (kind server, a child
// of the broker's span that made the call) and one per event handled (kind
// consumer, a child of the trace context the event carries). Without it
// (or with nil) the plugin starts no span, at no cost; the trace context
// of a call or event still reaches the handler's ctx either way, so calls
// the handler makes carry it on. sdk.Main sets it when
// OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/tracing.md); a plugin with its
// own main passes, say, otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error {
		o.tracer = wire.NewTracer(tp)
		return nil
	}
}
