package main

import (
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/plugbus/plugbus/broker"
)

// defaultAccount fills --account, when --account-signing-key is given
// without it, with the account of the broker's own credentials (--creds):
// the account a user's JWT was issued in is named in the JWT itself, so a
// deployment that mounts the files `broker auth init` wrote needs no
// public key copied into its command line (deployments/compose, the Helm
// chart). An --account given explicitly is kept as it is.
func defaultAccount(cfg *broker.Config) error {
	if cfg.AccountSigningKey == "" || cfg.Account != "" || cfg.Creds == "" {
		return nil
	}
	acc, err := credsAccount(cfg.Creds)
	if err != nil {
		return fmt.Errorf("--account not given and not found in --creds: %w", err)
	}
	cfg.Account = acc
	return nil
}

// credsAccount returns the public key of the account the user of a
// credentials file belongs to: its JWT's issuer account when a signing key
// signed it, else its issuer.
func credsAccount(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	acc := uc.IssuerAccount
	if acc == "" {
		acc = uc.Issuer
	}
	if !nkeys.IsValidPublicAccountKey(acc) {
		return "", fmt.Errorf("%s: the user's issuer %q is not an account", path, acc)
	}
	return acc, nil
}
