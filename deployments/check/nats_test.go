package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/broker"
)

// authInit writes what `broker auth init DIR` writes (the same function)
// to a temporary directory and returns it.
func authInit(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "auth")
	if _, err := broker.InitExternalAuth(dir, "plugbus"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// natsConfDir lays out /etc/nats as the compose file mounts it in each NATS
// container: the node's config as nats.conf, cluster.conf, and the auth
// volume (broker auth init's output) in auth/.
func natsConfDir(t *testing.T, node string, withAuth bool) string {
	t.Helper()
	dir := t.TempDir()
	for src, dst := range map[string]string{node + ".conf": "nats.conf", "cluster.conf": "cluster.conf"} {
		b, err := os.ReadFile(filepath.Join(composeDir, "nats", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if withAuth {
		if err := os.CopyFS(filepath.Join(dir, "auth"), os.DirFS(authInit(t))); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// nats-server's own config test (-t) of every node's config, with the
// auth config `broker auth init` writes included.
func TestNATSConfigs(t *testing.T) {
	ns := tool(t, "nats-server", "go install github.com/nats-io/nats-server/v2@v2.15.2")
	for _, n := range []string{"n1", "n2", "n3"} {
		dir := natsConfDir(t, n, true)
		out := run(t, dir, nil, ns, "-t", "-c", "nats.conf")
		if !strings.Contains(out, "is valid") {
			t.Errorf("%s: nats-server -t: %s", n, out)
		}
		t.Logf("%s: %s", n, strings.TrimSpace(out))
	}
}

// nats-server -t fails on what it should, so a pass means something.
func TestNATSConfigTestFails(t *testing.T) {
	ns := tool(t, "nats-server", "go install github.com/nats-io/nats-server/v2@v2.15.2")
	dir := natsConfDir(t, "n1", false)
	if out, err := runErr(dir, nil, ns, "-t", "-c", "nats.conf"); err == nil {
		t.Errorf("without the auth include: %s", out)
	}
	dir = natsConfDir(t, "n1", true)
	conf := filepath.Join(dir, "cluster.conf")
	b, _ := os.ReadFile(conf)
	bad := strings.Replace(string(b), "max_file_store: 8GB", "max_file_store: 8 gigs", 1)
	if bad == string(b) {
		t.Fatal("the mutation did not apply: update this test with cluster.conf")
	}
	if err := os.WriteFile(conf, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(dir, nil, ns, "-t", "-c", "nats.conf"); err == nil {
		t.Errorf("with a bad value: %s", out)
	}
}
