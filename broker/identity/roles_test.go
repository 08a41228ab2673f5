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
