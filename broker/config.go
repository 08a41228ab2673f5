package broker

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// Defaults applied by Config.withDefaults.
const (
	DefaultPrefix               = "plugbus"
	DefaultDataDir              = "./data"
	DefaultListen               = "127.0.0.1:4222"
	DefaultHTTPAddr             = "127.0.0.1:8080"
	DefaultHeartbeatInterval    = 5 * time.Second
	DefaultPluginTimeout        = 10 * time.Second
	DefaultActionTimeout        = 30 * time.Second
	DefaultMaxRequestBytes      = 1 << 20
	DefaultMaxConcurrency       = 256
	DefaultMaxConcurrentObjects = 64
	DefaultEventMaxAge          = 7 * 24 * time.Hour
	DefaultDLQMaxAge            = 30 * 24 * time.Hour
	DefaultDLQMaxBytes          = 1 << 30
	DefaultLogMaxAge            = 24 * time.Hour
	DefaultLogMaxBytes          = 256 << 20
	DefaultEventMaxBytes        = 4 << 30
	DefaultEventDedupWindow     = 2 * time.Minute
	DefaultAlertRetention       = 24 * time.Hour
	DefaultJobRetention         = 7 * 24 * time.Hour
	DefaultActionRetention      = 7 * 24 * time.Hour
	// DefaultActionProgressInterval is the least time between two
	// progress events of one action.
	DefaultActionProgressInterval = time.Second
	DefaultIdempotencyWindow      = 10 * time.Minute
	DefaultChainRetention         = time.Hour
	DefaultChainMaxBytes          = 1 << 30
	DefaultDrainTimeout           = 30 * time.Second
	DefaultRequestTimeout         = time.Minute
	// DefaultHookConcurrency and DefaultPluginConcurrency bound the calls
	// in flight to one hook point and to one plugin.
	DefaultHookConcurrency   = 64
	DefaultPluginConcurrency = 32
	// DefaultLeaseTTL is how long a broker's lease on the bus outlives its
	// last renewal (docs/scale-out.md): what a crashed broker held passes
	// on that long after it stopped renewing.
	DefaultLeaseTTL = 5 * time.Second
	// DefaultHostLostAfter is how many of its own heartbeat intervals a
	// host may miss before the broker marks it LOST.
	DefaultHostLostAfter = 3
	// embeddedMaxPayload is larger than DefaultMaxRequestBytes so an
	// oversized API request reaches the broker and gets a too_large reply
	// instead of the client's connection refusing it.
	embeddedMaxPayload = 8 << 20
)

// Values of Config.AckSampling.
const (
	AckSamplingOn  = "on"
	AckSamplingOff = "off"
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("invalid broker config")

// ErrAddressInUse is matched (errors.Is) by an *AddressInUseError.
var ErrAddressInUse = errors.New("address in use")

// AddressInUseError says an address the broker must listen on is taken.
type AddressInUseError struct {
	// Setting is the Config setting holding the address: "listen" (NATS)
	// or "http".
	Setting string
	Addr    string
	Err     error
}

func (e *AddressInUseError) Error() string {
	what := "NATS"
	if e.Setting == "http" {
		what = "HTTP"
	}
	return fmt.Sprintf("%s address %s is not free: %v (is another broker running?)", what, e.Addr, e.Err)
}

// Unwrap returns the listen error.
func (e *AddressInUseError) Unwrap() error { return e.Err }

// Is matches ErrAddressInUse.
func (e *AddressInUseError) Is(target error) bool { return target == ErrAddressInUse }

// Config configures a Broker. The zero value runs the embedded default: a
// nats-server with JetStream storing under ./data, NATS on 127.0.0.1:4222
// and HTTP on 127.0.0.1:8080.
type Config struct {
	// NATSURL points the broker at an existing NATS server instead of
	// embedding one.
	NATSURL string
	// Creds is a NATS credentials file used with NATSURL.
	Creds string
	// AccountSigningKey (an nkey seed file) and Account (the account's
	// public key) let a broker on an external NATS issue the bus's
	// credentials (busctl plugins creds, hostd's plugins): the account's
	// signing key as nsc makes it. Without them, on an external NATS, the
	// identity endpoints answer unavailable.
	AccountSigningKey string
	Account           string
	// TLSCert, TLSKey and TLSCA are the client TLS settings of the
	// broker's connection to an external NATS (as the nats CLI's --tlscert,
	// --tlskey, --tlsca).
	TLSCert, TLSKey, TLSCA string
	// ServerTLSCert and ServerTLSKey make the embedded server's client
	// port TLS-only.
	ServerTLSCert, ServerTLSKey string
	// DataDir is where the embedded server keeps JetStream files.
	DataDir string
	// Listen is the embedded server's client address (HOST:PORT; port 0 or
	// -1 picks a random free port).
	Listen string
	// HTTPAddr is where /healthz, /metrics and the alert intake (POST
	// /v1/alerts) are served ("" disables HTTP; port 0 picks a random free
	// port).
	HTTPAddr string
	// AlertsToken is the bearer token POST /v1/alerts requires
	// (Authorization: Bearer TOKEN); AlertsTokenFile names a file holding
	// it instead (set one of them). Without a token the intake takes
	// alerts only when the HTTP listener is loopback; on any other address
	// it refuses them (docs/observability.md).
	AlertsToken, AlertsTokenFile string
	// Pprof serves Go's runtime profiles under /debug/pprof/ on HTTPAddr
	// (off by default: profiles show internals, so turn it on where the
	// HTTP port is not exposed).
	Pprof bool
	// Prefix is the root of every plugbus subject (default "plugbus").
	Prefix string
	// Replicas is the replica count of streams and buckets (default 1; use 3
	// on a cluster).
	Replicas int
	// LeaseTTL is the TTL of this broker's lease on the bus (default 5s,
	// at least 2s): when the broker dies, the leadership and the object
	// locks it held pass on that long after its last renewal (at once
	// after a graceful stop). Renewals go every quarter of it; a broker
	// that cannot renew for 4/5 of it commits nothing under a lock. Keep
	// it above the NATS cluster's leader election time, or a node loss
	// costs every broker its lease.
	LeaseTTL time.Duration
	// HeartbeatInterval is how often the broker checks that every plugin
	// still has a running instance (default 5s).
	HeartbeatInterval time.Duration
	// PluginTimeout bounds each init, config and verify call (default 10s).
	PluginTimeout time.Duration
	// ActionTimeout bounds an action whose manifest declares no timeout
	// of its own (default 30s): docs/protocol.md#actions.
	ActionTimeout time.Duration
	// ActionRetention is how long a finished action stays in the actions
	// bucket (default 7 days); ActionProgressInterval is the least time
	// between two progress events of one action (default 1s; the last
	// report before the action ends is always published).
	ActionRetention, ActionProgressInterval time.Duration
	// MaxRequestBytes is the largest API request accepted (default 1 MiB).
	MaxRequestBytes int
	// MaxConcurrency bounds API requests handled at once (default 256).
	MaxConcurrency int
	// MaxConcurrentObjects bounds how many objects (jobs, machines,
	// alerts) have an operation with hook chains in progress at once
	// (default 64); operations on one object always run one at a time.
	MaxConcurrentObjects int
	// EventMaxAge is how long core events are kept for replay (default 7 days).
	EventMaxAge time.Duration
	// EventMaxBytes bounds the event stream's size; the oldest events go
	// first (default 4 GiB).
	EventMaxBytes int64
	// EventDedupWindow is how long the event stream remembers event ids to
	// drop a repeat (default 2 minutes, at least 5s): an outbox republish
	// after a crash (docs/reliability.md) within it is dropped, one after a
	// longer outage is stored twice with the same id. The server keeps
	// about 100 bytes per event published within the window.
	EventDedupWindow time.Duration
	// AlertRetention is how long a resolved (or suppressed) alert stays in
	// the alerts bucket, JobRetention how long a deleted job stays in the
	// jobs bucket (defaults 24h and 7 days); then they leave it.
	AlertRetention, JobRetention time.Duration
	// IdempotencyWindow is how long the reply to a request with an
	// idempotency key is kept: a repeat within it gets the same reply and
	// does nothing again (default 10m).
	IdempotencyWindow time.Duration
	// ChainRetention is how long the chain journal keeps a chain run and
	// its operation (default 1h, at least the idempotency window):
	// chains.get reads them, and an operation interrupted by a crash is
	// resumed while its journal lasts. ChainMaxBytes bounds the journal's
	// size; the oldest entries go first (default 1 GiB).
	ChainRetention time.Duration
	ChainMaxBytes  int64
	// DrainTimeout bounds how long a stopping broker lets the requests in
	// flight finish (default 30s).
	DrainTimeout time.Duration
	// RequestTimeout is the deadline of a request whose caller sent none
	// (default 1m); a caller's own (the Plugbus-Timeout header) wins.
	RequestTimeout time.Duration
	// HookConcurrency and PluginConcurrency bound the calls in flight to
	// one hook point (default 64) and to one plugin (default 32): a hung
	// plugin holds up only what waits on it.
	HookConcurrency, PluginConcurrency int
	// DLQMaxAge is how long dead letters are kept (default 30 days).
	DLQMaxAge time.Duration
	// DLQMaxBytes bounds the dead-letter stream's size; the oldest dead
	// letters go first (default 1 GiB).
	DLQMaxBytes int64
	// LogMaxAge is how long plugin log lines forwarded by hostd are kept
	// (default 24h).
	LogMaxAge time.Duration
	// LogMaxBytes bounds the log stream's size; the oldest lines go first
	// (default 256 MiB).
	LogMaxBytes int64
	// SelfCheck validates what the broker itself builds — every core
	// event's data and every API reply — against its schema before sending
	// it, turning a mismatch into an internal error. Input from outside is
	// always validated; this is for tests and debugging (it roughly doubles
	// the CPU cost of a request).
	SelfCheck bool
	// AckSampling says whether the server reports every acknowledgement of
	// a plugin's durable consumer (its sample frequency, 100%), which the
	// broker counts as plugbus_consumer_acked_total: AckSamplingOn (the
	// default) or AckSamplingOff (the ack counter stays at zero; naks,
	// dead letters and the consumer gauges are counted either way).
	AckSampling string
	// Logger receives the broker's structured logs (default: disabled).
	Logger *zerolog.Logger
	// TracerProvider, when set, gets the broker's OpenTelemetry spans: one
	// per API call, hook chain and hook step (docs/tracing.md). Nil is
	// tracing off, at no cost; trace context that callers send is still
	// passed on to hooks, plugins and events.
	TracerProvider trace.TracerProvider
	// ServerLogs forwards the embedded nats-server's own notices to Logger.
	ServerLogs bool
}

func (c Config) withDefaults() Config {
	if c.AckSampling == "" {
		c.AckSampling = AckSamplingOn
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.PluginTimeout == 0 {
		c.PluginTimeout = DefaultPluginTimeout
	}
	if c.ActionTimeout == 0 {
		c.ActionTimeout = DefaultActionTimeout
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.MaxConcurrentObjects == 0 {
		c.MaxConcurrentObjects = DefaultMaxConcurrentObjects
	}
	if c.EventMaxAge == 0 {
		c.EventMaxAge = DefaultEventMaxAge
	}
	if c.DLQMaxAge == 0 {
		c.DLQMaxAge = DefaultDLQMaxAge
	}
	if c.EventMaxBytes == 0 {
		c.EventMaxBytes = DefaultEventMaxBytes
	}
	if c.EventDedupWindow == 0 {
		c.EventDedupWindow = DefaultEventDedupWindow
	}
	if c.AlertRetention == 0 {
		c.AlertRetention = DefaultAlertRetention
	}
	if c.JobRetention == 0 {
		c.JobRetention = DefaultJobRetention
	}
	if c.ActionRetention == 0 {
		c.ActionRetention = DefaultActionRetention
	}
	if c.ActionProgressInterval == 0 {
		c.ActionProgressInterval = DefaultActionProgressInterval
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.HookConcurrency == 0 {
		c.HookConcurrency = DefaultHookConcurrency
	}
	if c.PluginConcurrency == 0 {
		c.PluginConcurrency = DefaultPluginConcurrency
	}
	if c.DLQMaxBytes == 0 {
		c.DLQMaxBytes = DefaultDLQMaxBytes
	}
	if c.LogMaxAge == 0 {
		c.LogMaxAge = DefaultLogMaxAge
	}
	if c.ChainRetention == 0 {
		c.ChainRetention = DefaultChainRetention
	}
	if c.ChainMaxBytes == 0 {
		c.ChainMaxBytes = DefaultChainMaxBytes
	}
	if c.LogMaxBytes == 0 {
		c.LogMaxBytes = DefaultLogMaxBytes
	}
	if c.Logger == nil {
		l := zerolog.Nop()
		c.Logger = &l
	}
	return c
}

// Validate reports the first problem with c, naming the field.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	if err := wire.ValidatePrefix(c.Prefix); err != nil {
		return bad("prefix", "%v", err)
	}
	if c.AckSampling != AckSamplingOn && c.AckSampling != AckSamplingOff {
		return bad("ack-sampling", "%q: use %s or %s", c.AckSampling, AckSamplingOn, AckSamplingOff)
	}
	if c.NATSURL == "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return bad("listen", "%q is not HOST:PORT: %v", c.Listen, err)
		}
		if c.Creds != "" {
			return bad("creds", "a credentials file is for an external server: set the NATS URL too")
		}
		if (c.ServerTLSCert == "") != (c.ServerTLSKey == "") {
			return bad("server-tlscert", "the embedded server's TLS needs both a certificate and a key")
		}
	} else if (c.AccountSigningKey == "") != (c.Account == "") {
		return bad("account", "issuing credentials on an external NATS needs both the account signing key and the account's public key")
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return bad("http", "%q is not HOST:PORT: %v", c.HTTPAddr, err)
		}
	}
	if c.AlertsToken != "" && c.AlertsTokenFile != "" {
		return bad("alerts-token", "set the alerts token or the file holding it, not both")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return bad("replicas", "%d must be between 1 and 5", c.Replicas)
	}
	for name, d := range map[string]time.Duration{
		"heartbeat-interval": c.HeartbeatInterval, "plugin-timeout": c.PluginTimeout,
		"action-timeout": c.ActionTimeout, "action-progress-interval": c.ActionProgressInterval, "event-max-age": c.EventMaxAge, "dlq-max-age": c.DLQMaxAge, "log-max-age": c.LogMaxAge,
	} {
		if d < 0 {
			return bad(name, "%s must not be negative", d)
		}
	}
	if c.LeaseTTL < 2*time.Second {
		return bad("lease-ttl", "%s is below 2s (keys expire by the second, and renewals go every quarter of it)", c.LeaseTTL)
	}
	if c.DLQMaxBytes < 1<<20 {
		return bad("dlq-max-bytes", "%d is below 1 MiB", c.DLQMaxBytes)
	}
	if c.LogMaxBytes < 1<<20 {
		return bad("log-max-bytes", "%d is below 1 MiB", c.LogMaxBytes)
	}
	if c.MaxRequestBytes < 1024 {
		return bad("max-request-bytes", "%d is below 1024", c.MaxRequestBytes)
	}
	if c.MaxConcurrentObjects < 1 {
		return bad("max-concurrent-objects", "%d must be at least 1", c.MaxConcurrentObjects)
	}
	if c.MaxConcurrency < 1 {
		return bad("max-concurrency", "%d must be at least 1", c.MaxConcurrency)
	}
	for name, d := range map[string]time.Duration{"alert-retention": c.AlertRetention, "job-retention": c.JobRetention,
		"action-retention": c.ActionRetention, "idempotency-window": c.IdempotencyWindow} {
		if d < time.Second {
			return bad(name, "%s is below 1s (records expire by the second)", d)
		}
	}
	for name, d := range map[string]time.Duration{"drain-timeout": c.DrainTimeout, "request-timeout": c.RequestTimeout} {
		if d <= 0 {
			return bad(name, "%s must be positive", d)
		}
	}
	if c.ActionTimeout > schemas.MaxActionTimeout {
		return bad("action-timeout", "%s is above the longest action timeout, %s", c.ActionTimeout, schemas.MaxActionTimeout)
	}
	if c.EventDedupWindow < 5*time.Second {
		return bad("event-dedup-window", "%s is below 5s: the outbox sweeper republishes pending events after 2s and needs them dropped as repeats", c.EventDedupWindow)
	}
	if c.EventMaxBytes < 1<<20 {
		return bad("event-max-bytes", "%d is below 1 MiB", c.EventMaxBytes)
	}
	if c.HookConcurrency < 1 || c.PluginConcurrency < 1 {
		return bad("hook-concurrency", "hook and plugin concurrency must be at least 1")
	}
	if c.ChainRetention < c.IdempotencyWindow {
		return bad("chain-retention", "%s is below the idempotency window (%s): a retry within the window must find its chains", c.ChainRetention, c.IdempotencyWindow)
	}
	if c.ChainMaxBytes < 1<<20 {
		return bad("chain-max-bytes", "%d is below 1 MiB", c.ChainMaxBytes)
	}
	return nil
}
