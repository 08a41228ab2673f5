package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/broker"
)

func TestDefaultAccountFromCreds(t *testing.T) {
	ea, err := broker.InitExternalAuth(t.TempDir(), "plugbus")
	if err != nil {
		t.Fatal(err)
	}
	cfg := broker.Config{NATSURL: "nats://n1:4222", Creds: ea.BrokerCreds, AccountSigningKey: ea.SigningKey}
	if err := defaultAccount(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Account != ea.Account {
		t.Fatalf("account from the broker's creds = %q, want %q (what auth init printed)", cfg.Account, ea.Account)
	}
	if _, err := broker.New(cfg); err != nil {
		t.Fatalf("broker config with the derived account: %v", err)
	}

	// An explicit --account is kept, even a wrong one (broker.New refuses it then).
	cfg = broker.Config{NATSURL: "nats://n1:4222", Creds: ea.BrokerCreds, AccountSigningKey: ea.SigningKey, Account: "explicit"}
	if err := defaultAccount(&cfg); err != nil || cfg.Account != "explicit" {
		t.Fatalf("explicit account: %q, %v", cfg.Account, err)
	}
	// Without a signing key nothing is filled in: no credentials are issued then.
	cfg = broker.Config{NATSURL: "nats://n1:4222", Creds: ea.BrokerCreds}
	if err := defaultAccount(&cfg); err != nil || cfg.Account != "" {
		t.Fatalf("no signing key: %q, %v", cfg.Account, err)
	}
}

func TestCredsAccount(t *testing.T) {
	dir := t.TempDir()
	// A user signed by the account key itself (no signing key): the issuer.
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	tok, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	direct := filepath.Join(dir, "direct.creds")
	if err := os.WriteFile(direct, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := credsAccount(direct); err != nil || got != accPub {
		t.Fatalf("user signed by the account: %q, %v; want %q", got, err, accPub)
	}

	garbage := filepath.Join(dir, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not creds"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := credsAccount(garbage); err == nil {
		t.Fatal("garbage creds: no error")
	}
	cfg := broker.Config{NATSURL: "nats://n1:4222", Creds: filepath.Join(dir, "missing.creds"), AccountSigningKey: "signing.nk"}
	if err := defaultAccount(&cfg); err == nil || !strings.Contains(err.Error(), "--account not given") {
		t.Fatalf("missing creds: %v", err)
	}
}
