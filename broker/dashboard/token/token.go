// Package token makes and checks the dashboard's login tokens.
//
// A login token is signed by the admin's own credentials: whoever holds an
// admin .creds file (its user JWT and nkey seed) can make one, offline,
// and nobody else can. The token carries the user JWT and a validity
// window, signed with the user's nkey (ed25519):
//
//	pbd1.<base64url(JSON {"jwt", "iat", "exp", "aud"})>.<base64url(signature)>
//
// Parse checks the token's own shape, signature and window; the broker
// then checks the JWT itself against its authority (identity.Verify: its
// signing key, not expired, not revoked, role admin). The token is the
// dashboard's session cookie too, so a session ends when the token does.
package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Version is the first part of every token.
const Version = "pbd1"

// Audience names what a token is for, so a signature made for something
// else never passes.
const Audience = "plugbus-dashboard"

// DefaultTTL and MaxTTL bound how long a token (and the session it
// opens) is valid.
const (
	DefaultTTL = 12 * time.Hour
	MaxTTL     = 7 * 24 * time.Hour
)

// LoginPath is where the dashboard takes a token (?token=…) and opens an
// admin session.
const LoginPath = "/dash/login"

// LoginURL is the URL that logs a browser in to the dashboard at base
// (such as http://127.0.0.1:8080) with tok.
func LoginURL(base, tok string) string {
	return strings.TrimSuffix(base, "/") + LoginPath + "?token=" + url.QueryEscape(tok)
}

// Role returns the plugbus role of the credentials in creds, from the
// role tag the bus's authority puts in every user JWT ("" without one).
func Role(creds []byte) (string, error) {
	userJWT, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", fmt.Errorf("%w: the credentials hold no user JWT: %v", ErrInvalid, err)
	}
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return "", fmt.Errorf("%w: the credentials' JWT: %v", ErrInvalid, err)
	}
	for _, t := range uc.Tags {
		if r, ok := strings.CutPrefix(t, "role:"); ok {
			return r, nil
		}
	}
	return "", nil
}

// clockSkew is how far in the future a token's issue time may be.
const clockSkew = time.Minute

// ErrInvalid is wrapped by every error of Parse and New.
var ErrInvalid = errors.New("invalid dashboard login token")

type payload struct {
	JWT      string `json:"jwt"`
	IssuedAt int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	Audience string `json:"aud"`
}

// Token is a parsed, signature-checked login token.
type Token struct {
	// UserJWT is the user JWT of the credentials that signed the token.
	UserJWT string
	// User is its claims (decoded, their own signature checked).
	User     *jwt.UserClaims
	IssuedAt time.Time
	Expires  time.Time
}

// New makes a login token valid for ttl from now (DefaultTTL when 0; at
// most MaxTTL), signed with the credentials in creds (a .creds file).
func New(creds []byte, ttl time.Duration, now time.Time) (string, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 || ttl > MaxTTL {
		return "", fmt.Errorf("%w: validity %s must be positive and at most %s", ErrInvalid, ttl, MaxTTL)
	}
	userJWT, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", fmt.Errorf("%w: the credentials hold no user JWT: %v", ErrInvalid, err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return "", fmt.Errorf("%w: the credentials hold no user nkey seed: %v", ErrInvalid, err)
	}
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return "", fmt.Errorf("%w: the credentials' JWT: %v", ErrInvalid, err)
	}
	if pub, _ := kp.PublicKey(); pub != uc.Subject {
		return "", fmt.Errorf("%w: the credentials' seed does not belong to their JWT", ErrInvalid)
	}
	body, err := json.Marshal(payload{JWT: userJWT, IssuedAt: now.Unix(), Expires: now.Add(ttl).Unix(), Audience: Audience})
	if err != nil {
		return "", err
	}
	signed := Version + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := kp.Sign([]byte(signed))
	if err != nil {
		return "", fmt.Errorf("sign the dashboard login token: %w", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Parse checks a token's shape, its signature by the user key of the JWT
// it carries, its audience and its validity window at now.
func Parse(s string, now time.Time) (*Token, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != Version {
		return nil, fmt.Errorf("%w: not a %s token", ErrInvalid, Version)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	if p.Audience != Audience {
		return nil, fmt.Errorf("%w: made for %q, not the dashboard", ErrInvalid, p.Audience)
	}
	uc, err := jwt.DecodeUserClaims(p.JWT)
	if err != nil {
		return nil, fmt.Errorf("%w: user JWT: %v", ErrInvalid, err)
	}
	pub, err := nkeys.FromPublicKey(uc.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: user key: %v", ErrInvalid, err)
	}
	if err := pub.Verify([]byte(parts[0]+"."+parts[1]), sig); err != nil {
		return nil, fmt.Errorf("%w: the signature is not the user's", ErrInvalid)
	}
	t := &Token{UserJWT: p.JWT, User: uc, IssuedAt: time.Unix(p.IssuedAt, 0), Expires: time.Unix(p.Expires, 0)}
	switch {
	case t.Expires.Sub(t.IssuedAt) > MaxTTL || !t.Expires.After(t.IssuedAt):
		return nil, fmt.Errorf("%w: validity window %s to %s is longer than %s or empty", ErrInvalid, t.IssuedAt.UTC(), t.Expires.UTC(), MaxTTL)
	case t.IssuedAt.After(now.Add(clockSkew)):
		return nil, fmt.Errorf("%w: issued in the future (%s)", ErrInvalid, t.IssuedAt.UTC().Format(time.RFC3339))
	case !now.Before(t.Expires):
		return nil, fmt.Errorf("%w: expired at %s", ErrInvalid, t.Expires.UTC().Format(time.RFC3339))
	}
	return t, nil
}
