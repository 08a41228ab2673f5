package busctl_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker"
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

// authBus runs an embedded broker with auth on (as `make run` does) and
// returns its NATS URL and the local admin's credentials file.
func authBus(t *testing.T) (url, adminCreds string) {
	t.Helper()
	dir := t.TempDir()
	l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	br, err := broker.New(broker.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: &l, HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-br.Ready():
	case err := <-done:
		t.Fatalf("broker stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker not ready within 30s")
	}
	return br.NATSURL(), filepath.Join(dir, broker.AdminCredsFile)
}

// natsCLI returns the nats CLI's path; without it the test fails
// (.ci/run installs it).
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "nats"); fileExists(p) {
			return p
		}
	}
	t.Fatal("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0 (.ci/run does)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// A context saved and selected with the real nats CLI is what busctl
// connects with when neither --context nor $NATS_CONTEXT is given: its
// server and credentials, on a bus with auth on; --context picks another
// one; a selected context that is gone is a usage error saying how to
// unselect it.
func TestNATSContextSelectedByNATSCLI(t *testing.T) {
	nats := natsCLI(t)
	url, creds := authBus(t)
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("HOME", cfg)
	for _, k := range []string{"NATS_URL", "NATS_CREDS", "NATS_CONTEXT", "PLUGBUS_DATA_DIR"} {
		t.Setenv(k, "")
	}
	// No ./data/creds/admin.creds to fall back to.
	t.Chdir(t.TempDir())
	natsCmd := func(args ...string) ([]byte, error) {
		cmd := exec.Command(nats, args...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfg, "HOME="+cfg)
		return cmd.CombinedOutput()
	}
	natsRun := func(args ...string) {
		t.Helper()
		if out, err := natsCmd(args...); err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := busctl.Execute(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// Without a context busctl goes to the default server and fails.
	if code, _, errOut := run("plugins", "ls"); code != busctl.ExitError || !strings.Contains(errOut, "cannot connect to NATS at "+busctl.DefaultServer) {
		t.Fatalf("no context: exit %d\n%s", code, errOut)
	}

	natsRun("context", "add", "plugbus-admin", "--server", url, "--creds", creds, "--description", "plugbus admin", "--select")
	natsRun("context", "add", "anon", "--server", url)
	code, out, errOut := run("plugins", "ls")
	if code != 0 || !strings.HasPrefix(out, "NAME") {
		t.Fatalf("selected context: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("-o", "json", "hosts", "ls"); code != 0 || !strings.Contains(out, `"hosts"`) {
		t.Fatalf("selected context, hosts ls: exit %d\n%s%s", code, out, errOut)
	}
	// --context wins over the selection: the anonymous one is refused by
	// the bus, and the hint names the context.
	code, _, errOut = run("--context", "anon", "plugins", "ls")
	if code != busctl.ExitError || !strings.Contains(errOut, "nats context anon") || !strings.Contains(errOut, "nats context info anon") {
		t.Fatalf("--context anon: exit %d\n%s", code, errOut)
	}
	// The selected one, without credentials: the hint says how to stop
	// using it.
	natsRun("context", "select", "anon")
	code, _, errOut = run("plugins", "ls")
	if code != busctl.ExitError || !strings.Contains(errOut, "the selected nats context anon") || !strings.Contains(errOut, "nats context unselect") {
		t.Fatalf("selected anon: exit %d\n%s", code, errOut)
	}
	// --creds on top of a context: the context's server, these credentials.
	if code, out, errOut := run("--creds", creds, "plugins", "ls"); code != 0 || !strings.HasPrefix(out, "NAME") {
		t.Fatalf("selected anon with --creds: exit %d\n%s%s", code, out, errOut)
	}
	// A selected context whose file is gone.
	natsRun("context", "select", "plugbus-admin")
	if err := os.Remove(filepath.Join(cfg, "nats", "context", "plugbus-admin.json")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run("plugins", "ls")
	if code != busctl.ExitUsage || !strings.Contains(errOut, `cannot load nats context "plugbus-admin", which `+"`nats context select`"+` chose`) ||
		!strings.Contains(errOut, "nats context unselect") {
		t.Fatalf("gone selected context: exit %d\n%s", code, errOut)
	}
	// The nats CLI unselects a context that is gone, then exits 1 (it
	// looks the context up again).
	if out, err := natsCmd("context", "unselect"); !strings.Contains(string(out), "unselecting it") {
		t.Fatalf("nats context unselect: %v\n%s", err, out)
	}
	if code, _, errOut := run("plugins", "ls"); code != busctl.ExitError || !strings.Contains(errOut, "cannot connect to NATS at "+busctl.DefaultServer) {
		t.Fatalf("unselected: exit %d\n%s", code, errOut)
	}
}
