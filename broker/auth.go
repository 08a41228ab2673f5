package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/internal/logging"
)

// Where the embedded broker keeps its authority and the local admin's
// credentials, under the data dir.
const (
	authDirName  = "auth"
	credsDirName = "creds"
	// AdminCredsFile is the local admin's credentials, relative to the
	// data dir: busctl finds them there (docs/security.md).
	AdminCredsFile = credsDirName + "/admin.creds"
)

// openAuthority opens the authority that fits the config: the embedded
// server's own (created on first start), an external NATS's account
// signing key, or none (an external NATS without plugbus identities).
func (b *Broker) openAuthority() error {
	switch {
	case b.cfg.NATSURL == "":
		a, err := identity.Open(filepath.Join(b.cfg.DataDir, authDirName))
		if err != nil {
			return fmt.Errorf("the bus's authority in %s: %w", filepath.Join(b.cfg.DataDir, authDirName), err)
		}
		b.auth = a
	case b.cfg.AccountSigningKey != "":
		a, err := identity.OpenSigner(b.cfg.AccountSigningKey, b.cfg.Account)
		if err != nil {
			return err
		}
		b.auth = a
	}
	return nil
}

// credsFile returns a credentials file of a fixed identity (the broker,
// the local admin) kept at path, issuing new ones when the file is
// missing, unreadable or revoked.
func (b *Broker) credsFile(path string, id identity.Identity) (string, error) {
	if raw, err := os.ReadFile(path); err == nil {
		if tok, err := jwt.ParseDecoratedJWT(raw); err == nil {
			if uc, err := jwt.DecodeUserClaims(tok); err == nil && uc.IssuerAccount == b.auth.AccountPublicKey() && !b.auth.Revoked(uc.Subject) {
				return path, nil
			}
		}
	}
	c, err := b.auth.Issue(b.cfg.Prefix, id, 0)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, c.File, 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// clientTLS returns the client TLS options of the config.
func clientTLS(cert, key, ca string) ([]nats.Option, error) {
	var opts []nats.Option
	if (cert == "") != (key == "") {
		return nil, errors.New("client TLS needs both a certificate and a key")
	}
	if cert != "" {
		opts = append(opts, nats.ClientCert(cert, key))
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	return opts, nil
}

// serverTLS loads the embedded server's TLS certificate.
func serverTLS(cert, key string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("embedded server TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// warnPlaintext says loudly when the embedded server listens beyond
// loopback without TLS: credentials and events would cross the network
// in the clear.
func (b *Broker) warnPlaintext() {
	if b.cfg.NATSURL != "" || b.cfg.ServerTLSCert != "" {
		return
	}
	host, _, err := net.SplitHostPort(b.cfg.Listen)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return
	}
	b.log.Warn().Str(logging.FieldNATSURL, b.cfg.Listen).
		Msg("INSECURE: the embedded NATS server listens beyond loopback WITHOUT TLS: credentials, events and configs cross the network in the clear; give it --server-tlscert and --server-tlskey, or listen on 127.0.0.1")
}
