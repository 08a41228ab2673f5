package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/wire"
	"github.com/rs/zerolog"
)

// ConnectConfig says how to reach NATS.
type ConnectConfig struct {
	// URL is the server URL (or a comma-separated list); empty means
	// $NATS_URL, then nats://127.0.0.1:4222.
	URL string
	// Creds is a NATS credentials file (the plugin's own user).
	Creds string
	// Name is the connection name shown by the server (use the plugin's
	// service name).
	Name string
	// InboxPrefix is the reply inbox prefix (default nats.go's "_INBOX").
	// A plugin's credentials let it read only its own inboxes,
	// wire.InboxPrefix("plugin", NAME), which listen sets.
	InboxPrefix string
	// TLSCert, TLSKey and TLSCA are client TLS settings, as the nats
	// CLI's --tlscert, --tlskey and --tlsca.
	TLSCert, TLSKey, TLSCA string
	// Logger, when set, receives connection events (retries, disconnects,
	// reconnects).
	Logger *zerolog.Logger
	// Options are extra nats.Options, applied last.
	Options []nats.Option
}

// URLOrDefault returns the URL Connect will use.
func (c ConnectConfig) URLOrDefault() string {
	if c.URL != "" {
		return c.URL
	}
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return nats.DefaultURL
}

// Connect connects to NATS, retrying with backoff until the server answers
// or ctx ends, and returns a connection that reconnects forever. Errors that
// retrying cannot fix (a bad URL, unreadable credentials, refused
// authorization) are returned at once.
func Connect(ctx context.Context, c ConnectConfig) (*nats.Conn, error) {
	url := c.URLOrDefault()
	log := zerolog.Nop()
	if c.Logger != nil {
		log = *c.Logger
	}
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS error (a permissions violation means the plugin's credentials do not allow it)")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str(FieldNATSURL, nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
		}),
	}
	if c.Name != "" {
		opts = append(opts, nats.Name(c.Name))
	}
	if c.Creds != "" {
		if _, err := os.Stat(c.Creds); err != nil {
			return nil, fmt.Errorf("nats credentials %s: %w", c.Creds, err)
		}
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("client TLS needs both a certificate and a key")
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	// A server that stops answering is left within seconds (a plugin on
	// a frozen node of a cluster would get nothing for minutes); the
	// caller's Options come after and may change it.
	opts = append(opts, wire.StaleServerOptions()...)
	opts = append(opts, c.Options...)
	nc, err := backoff.Retry(ctx, func() (*nats.Conn, error) {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
		return nil, backoff.Permanent(err)
	}, append(retryForever(250*time.Millisecond, 5*time.Second),
		backoff.WithNotify(func(err error, next time.Duration) {
			log.Warn().Err(err).Str(FieldNATSURL, logging.RedactURL(url)).Dur(FieldDelay, next).Msg("cannot reach NATS yet; retrying")
		}))...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
