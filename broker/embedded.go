package broker

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/rs/zerolog"
)

// startEmbedded starts an in-process nats-server with JetStream on the
// config's data dir and client address, trusting auth's operator.
func startEmbedded(cfg Config, auth *identity.Authority) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if port > 0 {
		// Fail at once, with a clear message, when the address is taken.
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, &AddressInUseError{Setting: "listen", Addr: cfg.Listen, Err: err}
		}
		_ = ln.Close()
	}
	storeDir, err := filepath.Abs(filepath.Join(cfg.DataDir, "jetstream"))
	if err != nil {
		return nil, fmt.Errorf("data dir %q: %w", cfg.DataDir, err)
	}
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w (choose another data dir)", storeDir, err)
	}
	opts := &server.Options{
		ServerName: "plugbus",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		MaxPayload: embeddedMaxPayload,
		NoSigs:     true,
	}
	// Auth is on: the server trusts the bus's operator and refuses
	// anonymous connections.
	if err := auth.Configure(opts); err != nil {
		return nil, fmt.Errorf("configure the embedded server's auth: %w", err)
	}
	if cfg.ServerTLSCert != "" {
		tc, err := serverTLS(cfg.ServerTLSCert, cfg.ServerTLSKey)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tc
		opts.TLS = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure embedded nats-server: %w", err)
	}
	if cfg.ServerLogs {
		s.SetLoggerV2(serverLogger{l: cfg.Logger.With().Str(logging.FieldComponent, "nats-server").Logger()}, false, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server did not accept connections on %s within 30s: is the port in use? choose another listen address", cfg.Listen)
	}
	return s, nil
}

// serverLogger adapts zerolog to nats-server's Logger interface.
type serverLogger struct{ l zerolog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info().Msgf(format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn().Msgf(format, v...) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error().Msgf(format, v...) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error().Msgf(format, v...) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug().Msgf(format, v...) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Trace().Msgf(format, v...) }
