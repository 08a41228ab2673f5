package identity

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
)

// ErrUntrusted is wrapped by Verify's errors: the user JWT is not one this
// authority issued and still honours.
var ErrUntrusted = errors.New("credentials not trusted")

// Verify checks a user JWT the way the NATS server would before letting
// it connect: signed by this authority's signing key for its account, not
// expired, not revoked. It returns the user's claims and role (from the
// "role:" tag Issue sets). The dashboard uses it to recognise the admin
// (docs/dashboard.md). An authority that holds no account JWT (a signer
// on an external NATS) cannot see revocations, so it checks the rest only.
func (a *Authority) Verify(userJWT string) (*jwt.UserClaims, Role, error) {
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return nil, "", fmt.Errorf("%w: not a user JWT: %v", ErrUntrusted, err)
	}
	var vr jwt.ValidationResults
	uc.Validate(&vr)
	if vr.IsBlocking(true) {
		return nil, "", fmt.Errorf("%w: user %s: %v", ErrUntrusted, uc.Name, vr.Errors())
	}
	sigPub, _ := a.signing.PublicKey()
	if uc.Issuer != sigPub || uc.IssuerAccount != a.accPub {
		return nil, "", fmt.Errorf("%w: user %s was not issued by this bus's account signing key", ErrUntrusted, uc.Name)
	}
	if uc.Expires != 0 && time.Now().Unix() >= uc.Expires {
		return nil, "", fmt.Errorf("%w: user %s expired at %s", ErrUntrusted, uc.Name, time.Unix(uc.Expires, 0).UTC().Format(time.RFC3339))
	}
	a.mu.Lock()
	revoked := a.claims != nil && a.claims.IsClaimRevoked(uc)
	a.mu.Unlock()
	if revoked {
		return nil, "", fmt.Errorf("%w: user %s is revoked", ErrUntrusted, uc.Name)
	}
	var role Role
	for _, t := range uc.Tags {
		if r, ok := strings.CutPrefix(t, "role:"); ok {
			role = Role(r)
		}
	}
	return uc, role, nil
}
