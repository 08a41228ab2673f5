package busctl_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/broker/dashboard/token"
	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/internal/busctl"
)

// dashboard login prints a login URL whose token the admin's credentials
// signed; it refuses credentials that are not an admin's. It needs no bus.
func TestDashboardLogin(t *testing.T) {
	auth, err := identity.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(id identity.Identity) string {
		c, err := auth.Issue("plugbus", id, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, string(id.Role)+".creds")
		if err := os.WriteFile(f, c.File, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	admin, plugin := write(identity.Identity{Role: identity.RoleAdmin}), write(identity.Identity{Role: identity.RolePlugin, Name: "x"})
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := busctl.Execute(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := run("--creds", admin, "dashboard", "login", "--url", "http://dash.example:8080/", "--ttl", "2h")
	if code != busctl.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil || u.Host != "dash.example:8080" || u.Path != token.LoginPath {
		t.Fatalf("printed %q, want a URL of the dashboard's login", out)
	}
	tok, err := token.Parse(u.Query().Get("token"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := tok.Expires.Sub(tok.IssuedAt); d != 2*time.Hour {
		t.Errorf("valid for %s, want 2h", d)
	}
	if _, role, err := auth.Verify(tok.UserJWT); err != nil || role != identity.RoleAdmin {
		t.Errorf("the bus's authority says %q, %v", role, err)
	}
	if code, _, errOut := run("--creds", plugin, "dashboard", "login"); code != busctl.ExitUsage || !strings.Contains(errOut, "not an admin's") {
		t.Errorf("a plugin's creds: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run("--creds", admin, "dashboard", "login", "--ttl", "9999h"); code != busctl.ExitUsage || !strings.Contains(errOut, "at most") {
		t.Errorf("a ttl over the maximum: exit %d: %s", code, errOut)
	}
}
