// Package plugintest runs a whole plugbus bus inside a test: an embedded
// nats-server with JetStream and the real broker, so a plugin author can
// prove a plugin against the real protocol in a few lines:
//
//	func TestIncrement(t *testing.T) {
//		bus := plugintest.Start(t)
//		p := newPlugin(t, sdk.WithPrefix(bus.Prefix()))
//		bus.StartPlugin(t, p)
//		var resp schemas.MachineActionResponse
//		bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{...}, &resp)
//	}
//
// With WithAuth, identities are on as on a real bus, and each plugin runs
// with the credentials the broker issues for it, so a test also proves that
// its permissions suffice. Everything started is stopped by t.Cleanup. This
// package links nats-server and the broker; import it from tests only.
package plugintest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// Timeouts of the helpers. They bound waits; they are never assertions.
const (
	// StartTimeout bounds starting the server, the broker and a plugin.
	StartTimeout = 30 * time.Second
	// WaitTimeout bounds WaitFor.
	WaitTimeout = 10 * time.Second
	// CallTimeout bounds one Call.
	CallTimeout = 10 * time.Second
)

type config struct {
	prefix    string
	logger    *zerolog.Logger
	heartbeat time.Duration
	broker    func(*broker.Config)
	auth      bool
}

// Option configures Start.
type Option func(*config)

// WithPrefix sets the bus's subject prefix (default "plugbus"). Give your
// plugins the same one with sdk.WithPrefix(bus.Prefix()).
func WithPrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithLogger sends the broker's logs to l. By default the broker logs
// warnings and errors to the test log (shown with -v or on failure), and
// everything when $PLUGBUS_TEST_LOG is set.
func WithLogger(l zerolog.Logger) Option { return func(c *config) { c.logger = &l } }

// WithHeartbeatInterval sets how often the broker pings plugins (default
// 1s), which bounds how fast a stopped plugin turns STALE.
func WithHeartbeatInterval(d time.Duration) Option { return func(c *config) { c.heartbeat = d } }

// WithBrokerConfig lets f change the broker's configuration before it
// starts (timeouts, limits). NATSURL and Prefix are set by Start.
func WithBrokerConfig(f func(*broker.Config)) Option { return func(c *config) { c.broker = f } }

// WithAuth turns identities on, as on a real bus: the server trusts an
// authority of the test's own (made with broker.InitExternalAuth), refuses
// anonymous connections and enforces every identity's permissions
// (docs/security.md). StartPlugin then runs each plugin with credentials
// issued for it by the broker (plugins.creds), so a test proves that the
// plugin can do what it does with its own permissions; PluginConn gives a
// connection with them. Conn stays the broker's.
func WithAuth() Option { return func(c *config) { c.auth = true } }

// Bus is an embedded bus: a nats-server and a broker, running until the
// test ends.
type Bus struct {
	srv    *server.Server
	broker *broker.Broker
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
	// With WithAuth: the broker's credentials file, and the plugins'
	// credentials files by name (issued on first use).
	auth     bool
	credsDir string
	mu       sync.Mutex
	creds    map[string]string
	// bcfg is the broker's config; stopBroker stops the running broker
	// (nil while none runs).
	bcfg       broker.Config
	stopBroker func(t testing.TB)
}

// Start starts a nats-server (127.0.0.1, random port, JetStream in
// t.TempDir()) and the broker against it, waits until the broker is ready
// and registers their shutdown with t.Cleanup. It fails the test if either
// does not start.
func Start(t testing.TB, opts ...Option) *Bus {
	t.Helper()
	c := config{prefix: wire.DefaultPrefix, heartbeat: time.Second}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		lvl := zerolog.WarnLevel
		if v, _ := strconv.ParseBool(os.Getenv("PLUGBUS_TEST_LOG")); v {
			lvl = zerolog.DebugLevel
		}
		l := zerolog.New(zerolog.NewTestWriter(t)).Level(lvl).With().Timestamp().Logger()
		c.logger = &l
	}

	sopts := &server.Options{}
	var ext *broker.ExternalAuth
	if c.auth {
		var err error
		if ext, err = broker.InitExternalAuth(t.TempDir(), c.prefix); err != nil {
			t.Fatalf("plugintest: make the bus's identities: %v", err)
		}
		if sopts, err = server.ProcessConfigFile(ext.ServerConfig); err != nil {
			t.Fatalf("plugintest: read the server's auth config: %v", err)
		}
	}
	sopts.Host, sopts.Port, sopts.JetStream, sopts.StoreDir = "127.0.0.1", server.RANDOM_PORT, true, t.TempDir()
	sopts.NoLog, sopts.NoSigs, sopts.MaxPayload = true, true, 8<<20
	srv, err := server.NewServer(sopts)
	if err != nil {
		t.Fatalf("plugintest: configure nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(StartTimeout) {
		srv.Shutdown()
		t.Fatalf("plugintest: nats-server did not start within %s", StartTimeout)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})

	bcfg := broker.Config{
		NATSURL:           srv.ClientURL(),
		Prefix:            c.prefix,
		HeartbeatInterval: c.heartbeat,
		Logger:            c.logger,
		// Check the broker's own events and replies against their schemas:
		// a test bus should catch contract drift.
		SelfCheck: true,
	}
	if c.broker != nil {
		c.broker(&bcfg)
		bcfg.NATSURL, bcfg.Prefix = srv.ClientURL(), c.prefix
	}
	var connOpts []nats.Option
	if ext != nil {
		bcfg.Creds, bcfg.AccountSigningKey, bcfg.Account = ext.BrokerCreds, ext.SigningKey, ext.Account
		connOpts = append(connOpts, nats.UserCredentials(ext.BrokerCreds))
	}
	bus := &Bus{srv: srv, prefix: c.prefix, auth: c.auth, creds: map[string]string{}, bcfg: bcfg}
	bus.startBroker(t)

	nc, err := nats.Connect(srv.ClientURL(), append(connOpts, nats.Name("plugintest"))...)
	if err != nil {
		t.Fatalf("plugintest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("plugintest: jetstream: %v", err)
	}
	bus.nc, bus.js = nc, js
	if c.auth {
		bus.credsDir = t.TempDir()
	}
	return bus
}

// pluginCreds returns the credentials file of a plugin, issued by the
// broker on first use (WithAuth).
func (b *Bus) pluginCreds(t testing.TB, name string) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.creds[name]; ok {
		return f
	}
	var resp schemas.CredsResponse
	if err := b.Call(schemas.APIPluginsCreds, schemas.CredsRequest{Name: name}, &resp); err != nil {
		t.Fatalf("plugintest: issue credentials for plugin %s: %v", name, err)
	}
	f := filepath.Join(b.credsDir, name+".creds")
	if err := os.WriteFile(f, []byte(resp.Creds), 0o600); err != nil {
		t.Fatalf("plugintest: write credentials of plugin %s: %v", name, err)
	}
	b.creds[name] = f
	return f
}

// connOptions are the options of a connection as plugin name: with
// WithAuth, its own credentials and inbox prefix.
func (b *Bus) connOptions(t testing.TB, name string) []nats.Option {
	t.Helper()
	opts := []nats.Option{nats.Name(wire.PluginService(name)), nats.MaxReconnects(-1)}
	if b.auth {
		opts = append(opts, nats.UserCredentials(b.pluginCreds(t, name)), nats.CustomInboxPrefix(wire.InboxPrefix("plugin", name)))
	}
	return opts
}

// PluginConn returns a new connection as plugin name, closed when the test
// ends: with WithAuth, with the plugin's own credentials (issued by the
// broker) and inbox prefix, so whatever it is refused, the plugin would be
// refused too; without, a plain connection. opts are applied last (a
// nats.ErrorHandler sees the server's permission violations).
func (b *Bus) PluginConn(t testing.TB, name string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(b.URL(), append(b.connOptions(t, name), opts...)...)
	if err != nil {
		t.Fatalf("plugintest: connect as plugin %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// URL returns the NATS URL of the bus.
func (b *Bus) URL() string { return b.srv.ClientURL() }

// Conn returns a client connection to the bus, owned by the Bus (do not
// close it; do not give it to sdk.Plugin.Run, which drains its connection).
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream returns a JetStream client on Conn.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Prefix returns the bus's subject prefix.
func (b *Bus) Prefix() string { return b.prefix }

// Server returns the embedded nats-server.
func (b *Bus) Server() *server.Server { return b.srv }

// Broker returns the running broker.
func (b *Bus) Broker() *broker.Broker {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.broker
}

// Call sends a request to a broker API endpoint (schemas.APIMachinesAction
// and the like) and decodes the reply into resp (which may be nil). Error
// replies come back as *schemas.Error.
func (b *Bus) Call(endpoint string, req, resp any) error {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	return wire.Call(ctx, b.nc, wire.APISubject(b.prefix, endpoint), req, resp)
}

// MustCall is Call that fails the test on error.
func (b *Bus) MustCall(t testing.TB, endpoint string, req, resp any) {
	t.Helper()
	if err := b.Call(endpoint, req, resp); err != nil {
		t.Fatalf("plugintest: %s: %v", endpoint, err)
	}
}

// Plugin returns a plugin's registry record.
func (b *Bus) Plugin(t testing.TB, name string) schemas.PluginRecord {
	t.Helper()
	var rec schemas.PluginRecord
	b.MustCall(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: name}, &rec)
	return rec
}

// WaitFor polls cond every few milliseconds until it returns true, and
// fails the test if it does not within WaitTimeout. Use it to wait for
// asynchronous outcomes instead of sleeping.
func (b *Bus) WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	WaitFor(t, cond)
}

// WaitFor is Bus.WaitFor without a bus.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("plugintest: condition not met within %s", WaitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Instance is a plugin started with StartPlugin.
type Instance struct {
	p      *sdk.Plugin
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	err    error
	waited bool
}

// StartPlugin runs p on a connection of its own in a goroutine, waits until
// it is ready (registered, config in sync, consuming when ACTIVE) and stops
// it when the test ends, failing the test if Run returns an error. The
// plugin must use the bus's prefix (sdk.WithPrefix(bus.Prefix())). With
// WithAuth, the connection has the plugin's own credentials.
func (b *Bus) StartPlugin(t testing.TB, p *sdk.Plugin) *Instance {
	t.Helper()
	if p.Prefix() != b.prefix {
		t.Fatalf("plugintest: plugin %s uses prefix %q, the bus %q: create it with sdk.WithPrefix(bus.Prefix())", p.Name(), p.Prefix(), b.prefix)
	}
	nc, err := nats.Connect(b.URL(), b.connOptions(t, p.Name())...)
	if err != nil {
		t.Fatalf("plugintest: connect plugin %s: %v", p.Name(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instance{p: p, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- p.Run(ctx, nc) }()
	t.Cleanup(func() {
		if err := in.Stop(); err != nil {
			t.Errorf("plugintest: plugin %s: %v", p.Name(), err)
		}
		nc.Close()
	})
	select {
	case <-p.Ready():
	case err := <-in.done:
		in.waited, in.err = true, err
		t.Fatalf("plugintest: plugin %s stopped before it was ready: %v", p.Name(), err)
	case <-time.After(StartTimeout):
		t.Fatalf("plugintest: plugin %s not ready within %s", p.Name(), StartTimeout)
	}
	return in
}

// Plugin returns the running plugin.
func (in *Instance) Plugin() *sdk.Plugin { return in.p }

// Conn returns the plugin's own connection.
func (in *Instance) Conn() *nats.Conn { return in.nc }

// Stop stops the plugin and returns what Run returned. It is idempotent.
func (in *Instance) Stop() error {
	if in.waited {
		return in.err
	}
	in.cancel()
	select {
	case in.err = <-in.done:
	case <-time.After(StartTimeout):
		in.err = fmt.Errorf("did not stop within %s", StartTimeout)
	}
	in.waited = true
	return in.err
}
