package busctl_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
)

// --context reads a nats CLI context: its server (unless --server is
// given) and its credentials; an unknown one is a usage error naming it.
func TestNATSContext(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	fb.reply(schemas.APIPluginsList, schemas.PluginListResponse{Plugins: []schemas.PluginRecord{{Name: "from-context", Version: "1.0.0", State: schemas.StateActive}}})
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("NATS_URL", "")
	t.Setenv("NATS_CREDS", "")
	dir := filepath.Join(cfg, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dev.json"), []byte(`{"description":"test","url":"`+b.url+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := busctl.Execute(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := run("--context", "dev", "plugins", "ls"); code != 0 || !strings.Contains(out, "from-context") {
		t.Errorf("--context dev: exit %d\n%s%s", code, out, errOut)
	}
	t.Setenv("NATS_CONTEXT", "dev")
	if code, out, errOut := run("plugins", "ls"); code != 0 || !strings.Contains(out, "from-context") {
		t.Errorf("$NATS_CONTEXT dev: exit %d\n%s%s", code, out, errOut)
	}
	// --server wins over the context's server.
	if code, _, errOut := run("--server", "nats://127.0.0.1:1", "plugins", "ls"); code != 1 || !strings.Contains(errOut, "cannot connect to NATS at nats://127.0.0.1:1") {
		t.Errorf("--server with a context: exit %d\n%s", code, errOut)
	}
	// The context's credentials file must exist.
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"url":"`+b.url+`","creds":"/nonexistent/x.creds"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("--context", "bad", "plugins", "ls"); code == 0 || !strings.Contains(errOut, "x.creds") {
		t.Errorf("context with missing creds: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := run("--context", "nope", "plugins", "ls"); code != busctl.ExitUsage || !strings.Contains(errOut, `cannot load nats context "nope"`) {
		t.Errorf("unknown context: exit %d\n%s", code, errOut)
	}
}
