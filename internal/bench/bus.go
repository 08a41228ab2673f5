package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// Transport is how a client reaches the server.
type Transport string

// Transports.
const (
	// InProcess connects through nats.InProcessServer: no socket at all,
	// what the broker itself uses with its embedded server.
	InProcess Transport = "inproc"
	// TCP connects over loopback TCP to 127.0.0.1, what a plugin process
	// or busctl uses.
	TCP Transport = "tcp"
)

// prodLogger is what a production binary logs with (JSON at info, with a
// timestamp), written nowhere: the formatting work is counted, the I/O not.
func prodLogger() zerolog.Logger {
	return zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// Bus is a real plugbus bus running in this process: the broker
// (broker.New + Run) with its embedded nats-server and JetStream store in a
// temp dir. Raw NATS measurements connect to the same server.
type Bus struct {
	Broker *broker.Broker
	Server *server.Server
	Prefix string
	// URL is the server's loopback TCP URL.
	URL string
	// Topology says how the broker reaches the server.
	Topology string

	dir    string
	ownSrv bool
	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	conns []*nats.Conn
	stops []func()
}

// StartBus starts a broker with its embedded server and waits until it is
// ready.
func StartBus(ctx context.Context) (*Bus, error) { return StartBusWith(ctx, nil) }

// StartBusWith is StartBus with the broker's configuration changed by
// edit first.
func StartBusWith(ctx context.Context, edit func(*broker.Config)) (*Bus, error) {
	dir, err := os.MkdirTemp("", "busbench-")
	if err != nil {
		return nil, err
	}
	bus := &Bus{Prefix: wire.DefaultPrefix, dir: dir, Topology: "broker embedded (in-process connection to its nats-server)"}
	log := prodLogger()
	cfg := broker.Config{Listen: "127.0.0.1:0", DataDir: dir, HTTPAddr: "", Logger: &log}
	if edit != nil {
		edit(&cfg)
	}
	if err := bus.startBroker(ctx, cfg); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	bus.Server = embeddedServer(bus.Broker)
	if bus.Server == nil {
		// The broker does not expose its embedded server: run our own and
		// point the broker at it over loopback TCP instead.
		bus.stopBroker()
		srv, err := StartServer(dir)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		bus.Server, bus.ownSrv = srv, true
		bus.Topology = "broker over loopback TCP to a nats-server started by busbench (embedded server not reachable)"
		cfg.NATSURL = srv.ClientURL()
		if err := bus.startBroker(ctx, cfg); err != nil {
			bus.Close()
			return nil, err
		}
	}
	bus.URL = bus.Server.ClientURL()
	if !bus.ownSrv {
		setCreds(bus.URL, brokerCreds(dir))
	}
	return bus, nil
}

func (b *Bus) startBroker(ctx context.Context, cfg broker.Config) error {
	br, err := broker.New(cfg)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- br.Run(rctx) }()
	select {
	case <-br.Ready():
	case err := <-done:
		cancel()
		return fmt.Errorf("broker stopped before it was ready: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		return errors.New("broker not ready within 30s")
	}
	b.Broker, b.cancel, b.done = br, cancel, done
	return nil
}

func (b *Bus) stopBroker() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
	}
	b.cancel = nil
}

// embeddedServer returns the broker's embedded nats-server (nil when it
// uses an external one).
func embeddedServer(b *broker.Broker) *server.Server { return b.Server() }

// StartServer starts a nats-server on a random loopback port with JetStream
// under dir, configured as the broker configures its embedded one.
func StartServer(dir string) (*server.Server, error) {
	return startServerOn(dir, "127.0.0.1", server.RANDOM_PORT)
}

func startServerOn(dir, host string, port int) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		ServerName: "plugbus", Host: host, Port: port, JetStream: true, StoreDir: dir + "/jetstream",
		MaxPayload: 8 << 20, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server not ready within 30s")
	}
	return s, nil
}

// Connect opens a client connection of the given transport, closed by Close.
func (b *Bus) Connect(t Transport, name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := connect(b.Server, b.URL, t, name, opts...)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.conns = append(b.conns, nc)
	b.mu.Unlock()
	return nc, nil
}

func connect(srv *server.Server, url string, t Transport, name string, opts ...nats.Option) (*nats.Conn, error) {
	o := append(append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1)}, authOpts(url)...), opts...)
	if t == InProcess {
		if srv == nil {
			return nil, errors.New("in-process connection needs the server in this process")
		}
		o = append(o, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, o...)
	if err != nil {
		return nil, fmt.Errorf("connect %s (%s): %w", name, t, err)
	}
	return nc, nil
}

// JetStream returns a JetStream client on a new connection.
func (b *Bus) JetStream(t Transport, name string, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, *nats.Conn, error) {
	nc, err := b.Connect(t, name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, opts...)
	return js, nc, err
}

// StartPlugin runs p on a new connection of transport t and waits until it is
// ready. The plugin stops when the bus closes (or when stop is called).
func (b *Bus) StartPlugin(p *sdk.Plugin, t Transport) (stop func(), err error) {
	return startPlugin(b.Server, b.URL, p, t, func(f func()) {
		b.mu.Lock()
		b.stops = append(b.stops, f)
		b.mu.Unlock()
	})
}

func startPlugin(srv *server.Server, url string, p *sdk.Plugin, t Transport, onClose func(func())) (func(), error) {
	nc, err := connect(srv, url, t, wire.PluginService(p.Name()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nc) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
			nc.Close()
		})
	}
	select {
	case <-p.Ready():
	case err := <-done:
		cancel()
		nc.Close()
		return nil, fmt.Errorf("plugin %s stopped before it was ready: %v", p.Name(), err)
	case <-time.After(30 * time.Second):
		stop()
		return nil, fmt.Errorf("plugin %s not ready within 30s", p.Name())
	}
	if onClose != nil {
		onClose(stop)
	}
	return stop, nil
}

// Close stops the plugins, the broker and the server and removes the store.
func (b *Bus) Close() {
	b.mu.Lock()
	stops, conns := b.stops, b.conns
	b.stops, b.conns = nil, nil
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range stops {
		wg.Go(s)
	}
	wg.Wait()
	for _, nc := range conns {
		nc.Close()
	}
	b.stopBroker()
	if b.ownSrv && b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
	_ = os.RemoveAll(b.dir)
}

// StartExtraBroker starts a second broker on the same bus, connected over
// loopback TCP (brokers can run side by side). It stops with the bus.
func (b *Bus) StartExtraBroker(ctx context.Context) (*broker.Broker, error) {
	log := prodLogger()
	cfg := broker.Config{NATSURL: b.URL, HTTPAddr: "", Logger: &log}
	if !b.ownSrv {
		// The first broker's embedded server: its credentials.
		cfg.Creds = brokerCreds(b.dir)
	}
	br, err := broker.New(cfg)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- br.Run(rctx) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
	select {
	case <-br.Ready():
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("second broker stopped before it was ready: %w", err)
	case <-time.After(30 * time.Second):
		stop()
		return nil, errors.New("second broker not ready within 30s")
	}
	b.mu.Lock()
	b.stops = append(b.stops, stop)
	b.mu.Unlock()
	return br, nil
}
