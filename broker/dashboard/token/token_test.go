package token_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/broker/dashboard/token"
	"github.com/plugbus/plugbus/broker/identity"
)

func TestToken(t *testing.T) {
	auth, err := identity.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.Issue("plugbus", identity.Identity{Role: identity.RoleAdmin}, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := token.New(admin.File, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := token.Parse(tok, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.User.Subject != admin.Public || !got.Expires.Equal(time.Unix(now.Add(time.Hour).Unix(), 0)) {
		t.Errorf("parsed %+v, want the admin's key and an hour's validity", got)
	}
	_, role, err := auth.Verify(got.UserJWT)
	if err != nil || role != identity.RoleAdmin {
		t.Errorf("verify: role %q, %v; want admin", role, err)
	}

	parts := strings.Split(tok, ".")
	other, _ := token.New(admin.File, 2*time.Hour, now)
	bad := map[string]string{
		"expired":           tok,
		"another payload":   parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2],
		"no signature":      parts[0] + "." + parts[1] + ".",
		"not a token":       "hello",
		"another version":   "pbd0." + parts[1] + "." + parts[2],
		"garbled signature": parts[0] + "." + parts[1] + ".!!",
	}
	for name, s := range bad {
		at := now
		if name == "expired" {
			at = now.Add(2 * time.Hour)
		}
		if _, err := token.Parse(s, at); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := token.New(admin.File, token.MaxTTL+time.Second, now); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("a validity over the maximum: %v", err)
	}
	if _, err := token.New([]byte("not creds"), 0, now); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("not creds: %v", err)
	}

	// Another bus's admin signs a valid token that this bus does not trust;
	// a revoked admin's token is refused too.
	otherAuth, _ := identity.Open(t.TempDir())
	stranger, _ := otherAuth.Issue("plugbus", identity.Identity{Role: identity.RoleAdmin}, 0)
	st, _ := token.New(stranger.File, time.Hour, now)
	pt, err := token.Parse(st, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Verify(pt.UserJWT); !errors.Is(err, identity.ErrUntrusted) {
		t.Errorf("another bus's admin: %v, want ErrUntrusted", err)
	}
	if err := auth.Revoke([]string{admin.Public}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := auth.Verify(got.UserJWT); !errors.Is(err, identity.ErrUntrusted) {
		t.Errorf("a revoked admin: %v, want ErrUntrusted", err)
	}
}
