// Package broker is the plugbus core: it runs (or joins) NATS JetStream,
// keeps the plugin registry, drives each plugin's lifecycle, routes actions,
// publishes core CloudEvents, dead-letters what plugins cannot handle and
// serves the broker API over NATS plus /healthz and /metrics over HTTP.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/plugbus/plugbus/broker/dashboard"
	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
	"github.com/rs/zerolog"
)

// Version is the broker's version, reported by its service.
const Version = version.Release

// Broker is one broker process. Several brokers may serve the same bus: they
// keep no state outside JetStream.
type Broker struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	tracer  wire.Tracer

	srv     *server.Server
	auth    *identity.Authority
	nc      *nats.Conn
	js      jetstream.JetStream
	st      *stores
	pub     *Publisher
	reg     *registry
	seq     *sequencer
	lease   *lease
	locks   *busLocks
	cluster *clusterMetrics
	journal *journal
	limits  *limits
	ready   chan struct{}
	httpLn  net.Listener
	dash    *dashboard.Dashboard
	intake  *intake
	natsURL string
}

// New checks cfg and returns a broker that Run starts. It has no side
// effects.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Broker{
		cfg:     cfg,
		log:     cfg.Logger.With().Str(logging.FieldComponent, "broker").Logger(),
		metrics: newMetrics(),
		tracer:  wire.NewTracer(cfg.TracerProvider),
		seq:     newSequencer(cfg.MaxConcurrentObjects),
		limits:  newLimits(),
		ready:   make(chan struct{}),
	}
	b.cluster = newClusterMetrics(b.metrics.reg)
	return b, nil
}

// Ready is closed once the streams, buckets, API and HTTP server are up.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// HTTPAddr returns the address the HTTP server listens on, once ready.
func (b *Broker) HTTPAddr() string {
	if b.httpLn == nil {
		return ""
	}
	return b.httpLn.Addr().String()
}

// Server returns the embedded nats-server, nil when the broker uses an
// external one (or before Run started it).
func (b *Broker) Server() *server.Server { return b.srv }

// Publisher returns the broker's core event publisher, once ready.
func (b *Broker) Publisher() *Publisher { return b.pub }

// NATSURL returns the URL clients use to reach the bus, once ready.
func (b *Broker) NATSURL() string { return b.natsURL }

// Run starts the broker and blocks until ctx ends, then drains and returns
// nil. A failure to start is returned at once.
func (b *Broker) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if b.cfg.NATSURL == "" {
		// First: nothing may be written to a data dir another broker uses.
		lock, err := lockDataDir(b.cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.release()
	}
	if err := b.connect(); err != nil {
		return err
	}
	defer b.shutdownNATS()

	setupCtx, setupCancel := context.WithTimeout(ctx, 30*time.Second)
	defer setupCancel()
	b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var chains jetstream.Stream
	err = whileClusterForms(setupCtx, b.log, func() error {
		var err error
		if b.st, err = ensureStores(setupCtx, b.js, b.cfg); err != nil {
			return err
		}
		chains, err = ensureJournal(setupCtx, b.js, b.cfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w (is JetStream enabled on the NATS server?)", err)
	}
	b.pub = &Publisher{js: b.js, prefix: b.cfg.Prefix, metrics: b.metrics, check: b.cfg.SelfCheck}
	b.journal = newJournal(b, chains)
	b.reg = newRegistry(b)
	if err := b.reg.load(setupCtx); err != nil {
		return err
	}

	// The lease and the view of the locks (docs/scale-out.md) outlive the
	// drain at a stop: requests in flight finish under their locks; the
	// lease is released last, so what it held passes on at once.
	b.lease = newLease(b, b.st.locks)
	b.locks = newBusLocks(b, b.st.locks, b.lease)
	b.lease.clearPredecessors(setupCtx)
	if err := b.lease.take(setupCtx); err != nil {
		return fmt.Errorf("%w (is JetStream available?)", err)
	}
	leaseCtx, leaseCancel := context.WithCancel(context.WithoutCancel(ctx))
	var leaseBG sync.WaitGroup
	leaseBG.Go(func() { b.lease.run(leaseCtx) })
	leaseBG.Go(func() { b.locks.watch(leaseCtx) })
	defer func() {
		leaseCancel()
		leaseBG.Wait()
		b.lease.release()
	}()
	if err := b.locks.waitReady(setupCtx); err != nil {
		return fmt.Errorf("read %s: %w", schemas.BucketLocks, err)
	}

	svc, err := b.startAPI()
	if err != nil {
		return err
	}
	defer func() { _ = svc.Stop(context.Background()) }()

	stopMetrics, err := b.startMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()

	httpSrv, err := b.startHTTP()
	if err != nil {
		return err
	}
	var bg sync.WaitGroup
	bg.Add(6)
	// The registry's watch of the plugins bucket feeds the sweeper too.
	sweeper := newOutboxSweeper(b)
	go func() { defer bg.Done(); b.journal.resume(ctx) }()
	go func() { defer bg.Done(); b.reg.watch(ctx, sweeper) }()
	go func() { defer bg.Done(); b.campaign(ctx) }()
	go func() { defer bg.Done(); b.hostsLoop(ctx) }()
	go func() { defer bg.Done(); sweeper.run(ctx, b.st.jobs, b.st.alerts, b.st.identities, b.st.actions) }()
	go func() { defer bg.Done(); b.keepActions(ctx) }()

	// Ready means the API answers: make sure the server has our
	// subscriptions before saying so.
	if err := b.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("flush API subscriptions: %w", err)
	}
	close(b.ready)
	b.log.Info().Str(logging.FieldNATSURL, logging.RedactURL(b.natsURL)).Str(logging.FieldHTTPAddr, b.HTTPAddr()).Str("prefix", b.cfg.Prefix).
		Bool("embedded", b.srv != nil).Msg("broker ready")

	<-ctx.Done()
	b.log.Info().Msg("broker stopping: draining requests")
	if httpSrv != nil {
		shutCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(shutCtx)
		c()
	}
	// No new requests; the ones in flight finish within the drain timeout,
	// with their own contexts (the stop is not their cancellation).
	stopCtx, stopCancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	if err := svc.Stop(stopCtx); err != nil {
		b.log.Warn().Err(err).Dur("drain_timeout", b.cfg.DrainTimeout).Msg("requests still running at the drain timeout; stopping anyway")
	}
	stopCancel()
	bg.Wait()
	b.log.Info().Msg("broker stopped")
	return nil
}

func (b *Broker) connect() error {
	opts := []nats.Option{
		nats.Name("plugbus-broker"),
		// Its own inboxes: an admin may read _INBOX.> (the nats CLI's),
		// not the replies plugins send the broker.
		nats.CustomInboxPrefix(wire.InboxPrefix("broker", "")),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn().Err(err).Msg("disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info().Str(logging.FieldNATSURL, nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
		}),
	}
	// A server that stops answering (frozen, cut off) is left within a
	// few seconds, not the client's default of minutes: the broker's
	// lease lives on renewals (docs/scale-out.md).
	opts = append(opts, wire.StaleServerOptions()...)
	if err := b.openAuthority(); err != nil {
		return err
	}
	if b.cfg.NATSURL == "" {
		srv, err := startEmbedded(b.cfg, b.auth)
		if err != nil {
			return err
		}
		b.srv = srv
		b.auth.Attach(srv)
		b.natsURL = srv.ClientURL()
		creds, err := b.credsFile(filepath.Join(b.cfg.DataDir, authDirName, "broker.creds"), identity.Identity{Role: identity.RoleBroker})
		if err == nil {
			_, err = b.credsFile(filepath.Join(b.cfg.DataDir, AdminCredsFile), identity.Identity{Role: identity.RoleAdmin})
		}
		if err != nil {
			srv.Shutdown()
			return fmt.Errorf("credentials: %w", err)
		}
		opts = append(opts, nats.InProcessServer(srv), nats.UserCredentials(creds))
		b.warnPlaintext()
	} else {
		b.natsURL = b.cfg.NATSURL
		if b.cfg.Creds != "" {
			opts = append(opts, nats.UserCredentials(b.cfg.Creds))
		}
		tlsOpts, err := clientTLS(b.cfg.TLSCert, b.cfg.TLSKey, b.cfg.TLSCA)
		if err != nil {
			return err
		}
		opts = append(opts, tlsOpts...)
	}
	connectURL := b.natsURL
	if b.srv != nil {
		// In process: no network, so no TLS, whatever the port requires.
		connectURL = "nats://" + strings.TrimPrefix(strings.TrimPrefix(b.natsURL, "tls://"), "nats://")
	}
	nc, err := nats.Connect(connectURL, opts...)
	if err != nil {
		if b.srv != nil {
			b.srv.Shutdown()
		}
		return fmt.Errorf("connect to NATS at %s: %w (check the NATS URL and credentials)", b.natsURL, err)
	}
	b.nc = nc
	return nil
}

func (b *Broker) shutdownNATS() {
	if b.nc != nil {
		if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			b.log.Warn().Err(err).Msg("drain NATS connection")
		}
		for i := 0; i < 100 && !b.nc.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

func (b *Broker) startHTTP() (*http.Server, error) {
	if b.cfg.HTTPAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", b.cfg.HTTPAddr)
	if err != nil {
		return nil, &AddressInUseError{Setting: "http", Addr: b.cfg.HTTPAddr, Err: err}
	}
	if b.intake, err = b.newIntake(ln.Addr()); err != nil {
		_ = ln.Close()
		return nil, err
	}
	b.httpLn = ln
	srv := &http.Server{Handler: b.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	if b.dash != nil {
		// Live streams never end by themselves: end them at shutdown.
		srv.RegisterOnShutdown(b.dash.Close)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error().Err(err).Msg("HTTP server failed")
		}
	}()
	return srv, nil
}
