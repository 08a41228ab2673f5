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
	"github.com/plugbus/plugbus/wire"
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
	return ensureCreds(b.auth, b.cfg.Prefix, path, id)
}

func ensureCreds(auth *identity.Authority, prefix, path string, id identity.Identity) (string, error) {
	if raw, err := os.ReadFile(path); err == nil {
		if tok, err := jwt.ParseDecoratedJWT(raw); err == nil {
			if uc, err := jwt.DecodeUserClaims(tok); err == nil && uc.IssuerAccount == auth.AccountPublicKey() && !auth.Revoked(uc.Subject) {
				return path, nil
			}
		}
	}
	c, err := auth.Issue(prefix, id, 0)
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

// ExternalAuth is what InitExternalAuth made, for a bus on an external
// NATS server.
type ExternalAuth struct {
	// ServerConfig is the nats-server configuration to include.
	ServerConfig string
	// BrokerCreds and AdminCreds are the broker's and an admin's
	// credentials files.
	BrokerCreds, AdminCreds string
	// SigningKey is the account signing key seed file and Account the
	// account's public key: the broker's --account-signing-key and
	// --account.
	SigningKey, Account string
}

// InitExternalAuth sets up identities for a bus on an external NATS
// server, in dir (created 0700; run again, it keeps the keys and the
// valid credentials): the operator, system and plugbus accounts and the
// account signing key (as the embedded broker makes in its data dir), the
// nats-server configuration that trusts them, and the broker's and an
// admin's credentials. The server config holds only public JWTs; the
// seeds stay in dir, 0600. docs/security.md walks through it.
func InitExternalAuth(dir, prefix string) (*ExternalAuth, error) {
	if err := wire.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	auth, err := identity.Open(dir)
	if err != nil {
		return nil, err
	}
	conf, err := auth.ServerConfig()
	if err != nil {
		return nil, err
	}
	out := &ExternalAuth{ServerConfig: filepath.Join(dir, "plugbus-auth.conf"), SigningKey: auth.SigningKeyFile(), Account: auth.AccountPublicKey()}
	if err := os.WriteFile(out.ServerConfig, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", out.ServerConfig, err)
	}
	if out.BrokerCreds, err = ensureCreds(auth, prefix, filepath.Join(dir, credsDirName, "broker.creds"), identity.Identity{Role: identity.RoleBroker}); err != nil {
		return nil, err
	}
	if out.AdminCreds, err = ensureCreds(auth, prefix, filepath.Join(dir, credsDirName, "admin.creds"), identity.Identity{Role: identity.RoleAdmin}); err != nil {
		return nil, err
	}
	return out, nil
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

// InsecureListen returns the warning a broker with this config logs at
// start, or "" when there is nothing to warn about: an embedded server
// listening beyond loopback without TLS lets credentials, events and
// configs cross the network in the clear.
func InsecureListen(c Config) string {
	if c.NATSURL != "" || c.ServerTLSCert != "" {
		return ""
	}
	host, _, err := net.SplitHostPort(c.withDefaults().Listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return ""
	}
	return "INSECURE: the embedded NATS server listens on " + c.withDefaults().Listen + ", beyond loopback, WITHOUT TLS: " +
		"credentials, events and configs cross the network in the clear; give it --server-tlscert and --server-tlskey, or listen on 127.0.0.1"
}

// warnPlaintext says loudly (InsecureListen) when the embedded server
// listens beyond loopback without TLS.
func (b *Broker) warnPlaintext() {
	if w := InsecureListen(b.cfg); w != "" {
		b.log.Warn().Str(logging.FieldNATSURL, b.cfg.Listen).Msg(w)
	}
}
