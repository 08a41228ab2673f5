package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// ErrNoRevocation is returned by Revoke when the authority holds no key
// that may sign the account (an external NATS where the broker got only
// the account's signing key).
var ErrNoRevocation = errors.New("revocation needs the operator's signing key")

// Creds is a user's credentials: the standard .creds file (its JWT and
// its nkey seed) that nats.go and the nats CLI read.
type Creds struct {
	File     []byte
	Public   string
	IssuedAt time.Time
}

// Authority issues and revokes the bus's users.
type Authority struct {
	mu      sync.Mutex
	dir     string
	signing nkeys.KeyPair // signs users
	accPub  string

	// Only for an authority that owns the operator (the embedded server):
	operator nkeys.KeyPair
	account  nkeys.KeyPair
	system   nkeys.KeyPair
	claims   *jwt.AccountClaims
	apply    func(*jwt.AccountClaims, string) error
}

// Open loads the authority kept in dir, creating it on first use: an
// operator, a system account, the plugbus account (with JetStream) and
// the account's signing key, each an nkey seed in a 0600 file. The
// account JWT, with its revocations, is kept there too.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth dir %s: %w", dir, err)
	}
	a := &Authority{dir: dir}
	var err error
	if a.operator, err = loadOrCreate(filepath.Join(dir, "operator.nk"), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = loadOrCreate(filepath.Join(dir, "system.nk"), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.account, err = loadOrCreate(filepath.Join(dir, "account.nk"), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.signing, err = loadOrCreate(filepath.Join(dir, "signing.nk"), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	a.accPub, _ = a.account.PublicKey()
	if err := a.loadClaims(); err != nil {
		return nil, err
	}
	return a, nil
}

// OpenSigner is the authority of a broker on an external NATS: it issues
// users with the account's signing key (an nkey seed file, as nsc makes
// with `nsc edit account --sk generate`) for the account accountPub.
// Without the operator it cannot revoke.
func OpenSigner(signingKeyFile, accountPub string) (*Authority, error) {
	raw, err := os.ReadFile(signingKeyFile)
	if err != nil {
		return nil, fmt.Errorf("account signing key: %w", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(raw)
	if err != nil {
		return nil, fmt.Errorf("account signing key %s: %w", signingKeyFile, err)
	}
	if !nkeys.IsValidPublicAccountKey(accountPub) {
		return nil, fmt.Errorf("account %q is not an account public key (A...)", accountPub)
	}
	return &Authority{signing: kp, accPub: accountPub}, nil
}

func loadOrCreate(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	if raw, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed(raw)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
		return kp, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	kp, err := create()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	if err := writeFile(path, seed); err != nil {
		return nil, err
	}
	return kp, nil
}

// writeFile writes a secret 0600, atomically.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (a *Authority) accountFile() string { return filepath.Join(a.dir, "account.jwt") }

// loadClaims reads the account JWT (revocations included) or makes it.
func (a *Authority) loadClaims() error {
	opPub, _ := a.operator.PublicKey()
	sigPub, _ := a.signing.PublicKey()
	if raw, err := os.ReadFile(a.accountFile()); err == nil {
		ac, err := jwt.DecodeAccountClaims(string(raw))
		if err != nil || ac.Subject != a.accPub || ac.Issuer != opPub {
			return fmt.Errorf("account JWT %s does not belong to this authority: remove it to start over", a.accountFile())
		}
		a.claims = ac
	} else {
		ac := jwt.NewAccountClaims(a.accPub)
		ac.Name = "plugbus"
		a.claims = ac
	}
	// The settings are re-applied at every start; revocations are kept.
	a.claims.SigningKeys.Add(sigPub)
	a.claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	// No default permissions: a user may do exactly what its JWT says.
	return a.saveClaims()
}

func (a *Authority) saveClaims() error {
	tok, err := a.claims.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("sign account JWT: %w", err)
	}
	return writeFile(a.accountFile(), []byte(tok))
}

// AccountPublicKey returns the plugbus account's public key.
func (a *Authority) AccountPublicKey() string { return a.accPub }

// Configure sets up an embedded server to trust this authority's
// operator, with the system and plugbus accounts preloaded into an
// in-memory resolver. Anonymous connections are then refused.
func (a *Authority) Configure(opts *server.Options) error {
	t, err := a.tokens()
	if err != nil {
		return err
	}
	opc, err := jwt.DecodeOperatorClaims(t.operator)
	if err != nil {
		return err
	}
	res := &server.MemAccResolver{}
	if err := res.Store(t.systemPub, t.system); err != nil {
		return err
	}
	if err := res.Store(a.accPub, t.account); err != nil {
		return err
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{opc}
	opts.AccountResolver = res
	opts.SystemAccount = t.systemPub
	return nil
}

// ServerConfig returns the nats-server configuration that trusts this
// authority, for an external NATS server (include it from the server's
// config file): the operator, the system account and both accounts
// preloaded into a memory resolver, as Configure does for the embedded
// one.
func (a *Authority) ServerConfig() (string, error) {
	t, err := a.tokens()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`# plugbus: NATS decentralized auth for the plugbus account (made by broker auth init).
# Include it from nats-server.conf; a server with it refuses anonymous connections.
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
`, t.operator, t.systemPub, t.systemPub, t.system, a.accPub, t.account), nil
}

// tokens are the signed JWTs a server trusting the authority needs.
type tokens struct {
	operator, system, systemPub, account string
}

func (a *Authority) tokens() (tokens, error) {
	if a.operator == nil {
		return tokens{}, errors.New("this authority does not own an operator")
	}
	opPub, _ := a.operator.PublicKey()
	opc := jwt.NewOperatorClaims(opPub)
	opc.Name = "plugbus"
	sysPub, _ := a.system.PublicKey()
	opc.SystemAccount = sysPub
	opJWT, err := opc.Encode(a.operator)
	if err != nil {
		return tokens{}, err
	}
	sys := jwt.NewAccountClaims(sysPub)
	sys.Name = "SYS"
	sysJWT, err := sys.Encode(a.operator)
	if err != nil {
		return tokens{}, err
	}
	a.mu.Lock()
	accJWT, err := a.claims.Encode(a.operator)
	a.mu.Unlock()
	if err != nil {
		return tokens{}, err
	}
	return tokens{operator: opJWT, system: sysJWT, systemPub: sysPub, account: accJWT}, nil
}

// SigningKeyFile is where Open keeps the account's signing key seed: the
// file a broker on an external NATS takes as --account-signing-key.
func (a *Authority) SigningKeyFile() string { return filepath.Join(a.dir, "signing.nk") }

// Attach lets the authority apply account changes (revocations) to a
// running embedded server.
func (a *Authority) Attach(srv *server.Server) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apply = func(ac *jwt.AccountClaims, tok string) error {
		if err := srv.AccountResolver().Store(a.accPub, tok); err != nil {
			return err
		}
		acc, err := srv.LookupAccount(a.accPub)
		if err != nil {
			return err
		}
		srv.UpdateAccountClaims(acc, ac)
		return nil
	}
}

// Issue makes new credentials for an identity: a fresh user nkey and a
// JWT with the identity's permissions, signed by the account's signing
// key. ttl 0 never expires.
func (a *Authority) Issue(prefix string, id Identity, ttl time.Duration) (Creds, error) {
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return Creds{}, err
	}
	pub, _ := ukp.PublicKey()
	seed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = id.UserName()
	uc.IssuerAccount = a.accPub
	uc.Permissions = Permissions(prefix, id)
	uc.Tags.Add("role:" + string(id.Role))
	if id.Name != "" {
		uc.Tags.Add("name:" + id.Name)
	}
	now := time.Now()
	if ttl > 0 {
		uc.Expires = now.Add(ttl).Unix()
	}
	a.mu.Lock()
	tok, err := uc.Encode(a.signing)
	a.mu.Unlock()
	if err != nil {
		return Creds{}, fmt.Errorf("sign user %s: %w", id, err)
	}
	file, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return Creds{}, err
	}
	return Creds{File: file, Public: pub, IssuedAt: time.Unix(uc.IssuedAt, 0)}, nil
}

// CanRevoke reports whether the authority can revoke (it owns the
// operator).
func (a *Authority) CanRevoke() bool { return a.operator != nil }

// Revoke makes every credential of these user keys useless from now on
// and closes their connections.
func (a *Authority) Revoke(pubs []string) error {
	if a.operator == nil {
		return ErrNoRevocation
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// A revocation holds for JWTs issued up to the time given (seconds):
	// one second ahead covers a JWT issued in this very second.
	at := time.Now().Add(time.Second)
	for _, p := range pubs {
		a.claims.RevokeAt(p, at)
	}
	if err := a.saveClaims(); err != nil {
		return err
	}
	if a.apply == nil {
		return nil
	}
	tok, err := a.claims.Encode(a.operator)
	if err != nil {
		return err
	}
	return a.apply(a.claims, tok)
}

// Revoked reports whether a user key is revoked.
func (a *Authority) Revoked(pub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.claims == nil {
		return false
	}
	_, ok := a.claims.Revocations[pub]
	return ok
}
