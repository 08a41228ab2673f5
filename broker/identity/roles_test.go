package identity

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// docs/security.md shows every role's permissions as Table renders them.
func TestSecurityDocTables(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []Identity{{Role: RoleBroker}, {Role: RoleAdmin}, {Role: RoleHost, Name: "HOST"}, {Role: RolePlugin, Name: "NAME"}} {
		if !strings.Contains(string(doc), Table("plugbus", id)) {
			t.Errorf("docs/security.md does not show the permissions of %s as the code has them:\n%s", id, Table("plugbus", id))
		}
	}
}

// The roles keep to what docs/security.md promises.
func TestPermissions(t *testing.T) {
	has := func(list []string, s string) bool { return slices.Contains(list, s) }
	admin := Permissions("plugbus", Identity{Role: RoleAdmin})
	for _, s := range admin.Pub.Allow {
		if strings.HasPrefix(s, "$JS.API.CONSUMER.") || strings.HasPrefix(s, "$JS.API.STREAM.DELETE") || strings.HasPrefix(s, "$JS.API.STREAM.PURGE") ||
			strings.HasPrefix(s, "plugbus.plugin.") || strings.HasPrefix(s, "plugbus.evt.") || strings.HasPrefix(s, "$KV.") {
			t.Errorf("admin may publish %s", s)
		}
	}
	for _, s := range admin.Sub.Allow {
		if strings.HasPrefix(s, "plugbus.plugin.") || strings.HasPrefix(s, "plugbus.hook.") || strings.HasPrefix(s, "_INBOX_") {
			t.Errorf("admin may subscribe to %s", s)
		}
	}
	p := Permissions("acme", Identity{Role: RolePlugin, Name: "inc"})
	if p.Resp == nil || p.Resp.MaxMsgs != 1 {
		t.Error("a plugin may not reply to the requests it receives")
	}
	for _, want := range []string{"acme.api.plugins.register.inc", "acme.evt.plugin.inc.>", "$JS.API.CONSUMER.MSG.NEXT." + schemas.StreamEvents + ".plugin_inc"} {
		if !has(p.Pub.Allow, want) {
			t.Errorf("plugin inc may not publish %s", want)
		}
	}
	for _, s := range p.Pub.Allow {
		if strings.Contains(s, "STREAM.DELETE") || strings.Contains(s, "STREAM.PURGE") || strings.Contains(s, "STREAM.CREATE") ||
			strings.Contains(s, "STREAM.UPDATE") || s == "acme.api.>" || strings.HasPrefix(s, "acme.evt.") && !strings.HasPrefix(s, "acme.evt.plugin.inc.") {
			t.Errorf("plugin inc may publish %s", s)
		}
	}
	for _, s := range p.Sub.Allow {
		if strings.HasPrefix(s, "acme.") && !strings.HasPrefix(s, "acme.plugin.inc.") && s != "acme.hook.*.*.inc" {
			t.Errorf("plugin inc may subscribe to %s", s)
		}
	}
	h := Permissions("plugbus", Identity{Role: RoleHost, Name: "h1"})
	if !has(h.Pub.Allow, "plugbus.api.hosts.plugin_creds.h1") || has(h.Pub.Allow, "plugbus.api.>") {
		t.Errorf("host h1 publish %v", h.Pub.Allow)
	}
}

// matches reports whether subject (no wildcards) matches filter.
func matches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return i < len(st)
		}
		if i >= len(st) || f != "*" && f != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

// Dead letters, reading single events, verifying plugins and the chain
// journal are for admins only: plugins and hosts may not publish their
// subjects.
func TestAdminOnlyEndpoints(t *testing.T) {
	may := func(p []string, subject string) bool {
		return slices.ContainsFunc(p, func(f string) bool { return matches(f, subject) })
	}
	for _, ep := range []string{schemas.APIDLQList, schemas.APIDLQGet, schemas.APIDLQReplay, schemas.APIDLQPurge,
		schemas.APIEventsGet, schemas.APIPluginsVerify, schemas.APIPluginsReplay, schemas.APIChainsGet, schemas.APIChainsList} {
		subject := "plugbus.api." + ep
		if !may(Permissions("plugbus", Identity{Role: RoleAdmin}).Pub.Allow, subject) {
			t.Errorf("admin may not publish %s", subject)
		}
		for _, id := range []Identity{{Role: RolePlugin, Name: "inc"}, {Role: RoleHost, Name: "h1"}} {
			if may(Permissions("plugbus", id).Pub.Allow, subject) {
				t.Errorf("%s may publish %s", id, subject)
			}
		}
	}
	// Plugins read alerts as they read jobs and machines.
	for _, ep := range []string{schemas.APIAlertsList, schemas.APIAlertsGet} {
		if !may(Permissions("plugbus", Identity{Role: RolePlugin, Name: "inc"}).Pub.Allow, "plugbus.api."+ep) {
			t.Errorf("plugin inc may not publish plugbus.api.%s", ep)
		}
	}
}
