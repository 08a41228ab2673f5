// Package dashboard is the ops dashboard the broker serves on its HTTP
// port: live events, plugins, hook chains, dead letters and hosts, as
// server-rendered HTML with a little JavaScript, all embedded in the
// binary (no build step, no CDN). Updates arrive over Server-Sent Events:
// one JetStream ordered consumer per browser on the event stream, with a
// bounded buffer, resumed from Last-Event-ID (the stream sequence), and
// KV watches of the plugin and host buckets that say what changed (never
// the values: records hold configs). Pages render what the broker API
// returns, so secrets are redacted as the API redacts them, and the
// dashboard drops configs and process output altogether.
//
// Anyone who can reach the port may look; actions (verify, enable,
// disable, replay) need a login token signed by the admin's credentials
// (package token, `busctl dashboard login`). docs/dashboard.md has the
// pages, the access rules and the live protocol.
package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker/dashboard/token"
	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// Defaults of Config.
const (
	DefaultBufferSize  = 512
	DefaultBacklog     = 200
	DefaultCallTimeout = 5 * time.Second
	// writeTimeout bounds one write to a browser: one that stops reading
	// loses its stream rather than holding a goroutine.
	writeTimeout = 10 * time.Second
	// keepAlive is how often an idle stream sends a comment, so proxies
	// and the browser see it alive.
	keepAlive = 15 * time.Second
	// retryMs is the reconnection delay the stream asks browsers for.
	retryMs = 500
)

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("invalid dashboard config")

// Verifier checks the user JWT of a login token against the bus's
// authority and returns the user's role; identity.Authority.Verify is one.
type Verifier func(userJWT string) (identity.Role, error)

// Config configures a Dashboard.
type Config struct {
	// Conn is the broker's NATS connection: the dashboard calls the broker
	// API and reads the streams and buckets with it.
	Conn *nats.Conn
	// JetStream is a JetStream client on Conn.
	JetStream jetstream.JetStream
	// Prefix is the bus's subject prefix.
	Prefix string
	// Logger receives the dashboard's logs.
	Logger zerolog.Logger
	// Verify recognises the admin; nil leaves the dashboard read-only
	// (a broker without the bus's authority cannot check credentials).
	Verify Verifier
	// BufferSize is how many events wait for one slow browser before it
	// is told it fell behind (default DefaultBufferSize).
	BufferSize int
	// Backlog is how many past events the events page starts with
	// (default DefaultBacklog).
	Backlog int
	// CallTimeout bounds each broker API call a page makes (default
	// DefaultCallTimeout).
	CallTimeout time.Duration
}

// Validate checks the config.
func (c Config) Validate() error {
	switch {
	case c.Conn == nil:
		return fmt.Errorf("%w: no NATS connection", ErrInvalidConfig)
	case c.JetStream == nil:
		return fmt.Errorf("%w: no JetStream client", ErrInvalidConfig)
	case c.BufferSize < 0 || c.Backlog < 0 || c.CallTimeout < 0:
		return fmt.Errorf("%w: buffer size, backlog and call timeout must not be negative", ErrInvalidConfig)
	}
	return wire.ValidatePrefix(c.Prefix)
}

func (c Config) withDefaults() Config {
	if c.BufferSize == 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	return c
}

// Dashboard serves the dashboard's pages, stream and actions.
type Dashboard struct {
	cfg  Config
	log  zerolog.Logger
	api  *client.Client
	tmpl *templates

	mu      sync.Mutex
	streams map[*stream]struct{}
	// gate, when set, holds new streams until it is closed (holdStreams).
	gate chan struct{}
	// closed refuses new streams (Close).
	closed bool
}

// New checks cfg and returns a dashboard. It has no side effects.
func New(cfg Config) (*Dashboard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	return &Dashboard{
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "dashboard").Logger(),
		api:     client.New(cfg.Conn, client.WithPrefix(cfg.Prefix), client.WithTimeout(cfg.CallTimeout)),
		tmpl:    t,
		streams: map[*stream]struct{}{},
	}, nil
}

// Paths of the dashboard's pages; every other path it serves is below
// BasePath.
const (
	PathEvents      = "/"
	PathPlugins     = "/plugins"
	PathHooks       = "/hooks"
	PathDeadLetters = "/dead-letters"
	PathHosts       = "/hosts"
	PathActions     = "/actions"
	BasePath        = "/dash/"
	// PathLogin takes ?token=… (a login token) and opens an admin session.
	PathLogin = token.LoginPath
)

// Register adds the dashboard's routes to mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	page := func(name string) http.Handler {
		return d.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { d.servePage(w, r, name) }))
	}
	mux.Handle("GET /{$}", page(pageEvents))
	mux.Handle("GET "+PathPlugins, page(pagePlugins))
	mux.Handle("GET "+PathHooks, page(pageHooks))
	mux.Handle("GET "+PathDeadLetters, page(pageDeadLetters))
	mux.Handle("GET "+PathHosts, page(pageHosts))
	mux.Handle("GET "+PathActions, page(pageActions))
	mux.Handle("GET "+BasePath+"fragment/{page}", d.secure(http.HandlerFunc(d.serveFragment)))
	mux.Handle("GET "+BasePath+"static/", d.secure(http.StripPrefix(BasePath+"static/", staticHandler())))
	mux.Handle("GET "+BasePath+"stream", d.secure(http.HandlerFunc(d.serveStream)))
	mux.Handle("GET "+BasePath+"event/{seq}", d.secure(http.HandlerFunc(d.serveEvent)))
	mux.Handle("GET "+PathLogin, d.secure(http.HandlerFunc(d.serveLogin)))
	mux.Handle("POST "+BasePath+"logout", d.secure(d.admin(http.HandlerFunc(d.serveLogout))))
	mux.Handle("POST "+BasePath+"action/plugins/{name}/verify", d.secure(d.admin(http.HandlerFunc(d.actionVerify))))
	mux.Handle("POST "+BasePath+"action/plugins/{name}/{verb}", d.secure(d.admin(http.HandlerFunc(d.actionPluginHost))))
	mux.Handle("POST "+BasePath+"action/dead-letters/{seq}/replay", d.secure(d.admin(http.HandlerFunc(d.actionReplay))))
	mux.Handle("POST "+BasePath+"action/actions/{id}/cancel", d.secure(d.admin(http.HandlerFunc(d.actionCancel))))
}

// secure sets the headers every response carries: a content security
// policy that allows only the dashboard's own scripts, styles and
// connections (no inline code), no framing, no referrer (a login URL
// never leaks), no sniffing.
func (d *Dashboard) secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
