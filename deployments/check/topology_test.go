//go:build topology

package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs a process for the rest of the test, its output in
// dir/name.log. With restart, a process that exits is started again a
// second later, as compose's restart: unless-stopped does.
func start(t *testing.T, dir, name string, env []string, restart bool, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var cmd *exec.Cmd
	stopped := false
	exited := make(chan struct{})
	launch := func() error {
		c := exec.Command(bin, args...)
		c.Dir = dir
		c.Env = append(os.Environ(), env...)
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			return err
		}
		cmd = c
		return nil
	}
	if err := launch(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		defer close(exited)
		for {
			mu.Lock()
			c := cmd
			mu.Unlock()
			_ = c.Wait()
			mu.Lock()
			if stopped || !restart {
				mu.Unlock()
				return
			}
			fmt.Fprintf(logf, "--- %s exited (%v): restarting ---\n", name, c.ProcessState)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			if stopped {
				mu.Unlock()
				return
			}
			err := launch()
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		mu.Unlock()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			mu.Lock()
			_ = cmd.Process.Kill()
			mu.Unlock()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("--- %s's log (end) ---\n%s", name, b)
		}
	})
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		var done bool
		if done, last = ok(); done {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %s)", what, d, last)
}

func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%q is not there any more: update this test", pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// The compose topology, run as processes on this machine: three
// nats-servers on the compose NATS configs (ports and store moved to
// loopback and a temporary directory, the auth include as broker auth init
// writes it), the two brokers, host-creds, hostd and the webhook sink with
// the compose file's own command lines and hostd.yaml, on the binaries the
// Dockerfile's build stage makes. The bus must come up with R3 streams on
// all three nodes, hostd's host UP with the three plugins ACTIVE, and a
// fired alert must reach the sink. What it cannot cover: the images, the
// container network, volume ownership, the health checks' timing.
//
// Not part of make deploy-check yet (so it is behind the build tag
// topology): run it by hand with go test -tags topology -run Topology. By hand (the same steps in a shell) the
// topology came up as described; under this test, on a loaded machine, the
// brokers' first R3 stream creations timed out again and again (the
// streams were created on the servers, the replies did not reach the
// broker in time), which is not understood yet.
func TestComposeTopologyAsProcesses(t *testing.T) {
	ns := tool(t, "nats-server", "go install github.com/nats-io/nats-server/v2@v2.15.2")
	img := buildImage(t)
	p := composeProject(t)
	dir := t.TempDir()
	auth := authInit(t)

	nodes := []string{"n1", "n2", "n3"}
	client, cluster, mon := map[string]int{}, map[string]int{}, map[string]int{}
	for _, n := range nodes {
		client[n], cluster[n], mon[n] = freePort(t), freePort(t), freePort(t)
	}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client[n]))
	}
	natsURL := strings.Join(urls, ",")
	for _, n := range nodes {
		nd := filepath.Join(dir, n)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		pairs := []string{
			"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", client[n]),
			"http: 0.0.0.0:8222", fmt.Sprintf("http: 127.0.0.1:%d", mon[n]),
			"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", cluster[n]),
			"store_dir: /data", "store_dir: " + filepath.Join(nd, "data"),
		}
		for _, m := range nodes {
			pairs = append(pairs, "nats://"+m+":6222", fmt.Sprintf("nats://127.0.0.1:%d", cluster[m]))
		}
		conf := replaceAll(t, readFile(t, filepath.Join(composeDir, "nats", "cluster.conf")), pairs...)
		for name, body := range map[string]string{"cluster.conf": conf, "nats.conf": readFile(t, filepath.Join(composeDir, "nats", n+".conf"))} {
			if err := os.WriteFile(filepath.Join(nd, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(auth, filepath.Join(nd, "auth")); err != nil {
			t.Fatal(err)
		}
		start(t, nd, n, nil, false, ns, "-c", "nats.conf")
	}
	for _, n := range nodes {
		waitFor(t, n+" /healthz", 30*time.Second, func() (bool, string) {
			r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", mon[n]))
			if err != nil {
				return false, err.Error()
			}
			defer r.Body.Close()
			return r.StatusCode == 200, r.Status
		})
	}

	// The brokers are started (and restarted when they give up, as compose
	// does) as soon as the nodes are healthy, as in compose.

	// The compose file's command lines, with its container paths and
	// addresses mapped onto this machine.
	hostCreds := filepath.Join(dir, "host-creds")
	if err := os.MkdirAll(hostCreds, 0o700); err != nil {
		t.Fatal(err)
	}
	sinkPort := freePort(t)
	local := func(args []string, httpPort int) []string {
		var out []string
		for _, a := range args {
			a = strings.ReplaceAll(a, "nats://n1:4222,nats://n2:4222,nats://n3:4222", natsURL)
			a = strings.ReplaceAll(a, "/var/lib/plugbus/auth", auth)
			a = strings.ReplaceAll(a, "/var/lib/plugbus/host-creds", hostCreds)
			a = strings.ReplaceAll(a, "0.0.0.0:8080", fmt.Sprintf("127.0.0.1:%d", httpPort))
			a = strings.ReplaceAll(a, "0.0.0.0:8099", fmt.Sprintf("127.0.0.1:%d", sinkPort))
			out = append(out, a)
		}
		return out
	}
	bin := func(argv []string) string {
		here, ok := img.files[argv[0]]
		if !ok {
			t.Fatalf("the image has no %s", argv[0])
		}
		return here
	}
	admin := filepath.Join(auth, "creds", "admin.creds")
	busctl := func(args ...string) (string, error) {
		return runErr(dir, nil, img.files["/usr/local/bin/busctl"], append([]string{"--server=" + natsURL, "--creds=" + admin}, args...)...)
	}
	var brokerPorts []int
	for _, name := range []string{"broker-1", "broker-2"} {
		port := freePort(t)
		brokerPorts = append(brokerPorts, port)
		a := local(argv(p.Services[name]), port)
		bd := filepath.Join(dir, name)
		if err := os.MkdirAll(bd, 0o755); err != nil {
			t.Fatal(err)
		}
		start(t, bd, name, nil, true, bin(a), a[1:]...)
	}
	for _, port := range brokerPorts {
		waitFor(t, fmt.Sprintf("broker on %d /healthz", port), 120*time.Second, func() (bool, string) {
			r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
			if err != nil {
				return false, err.Error()
			}
			defer r.Body.Close()
			return r.StatusCode == 200, r.Status
		})
	}
	// The brokers' compose health check passes.
	hc := local(p.Services["broker-1"].HealthCheck.Test[1:], 0)
	if out, err := runErr(dir, nil, bin(hc), hc[1:]...); err != nil {
		t.Fatalf("the brokers' health check: %v\n%s", err, out)
	}
	// host-creds.
	a := local(argv(p.Services["host-creds"]), 0)
	if out, err := runErr(dir, nil, bin(a), a[1:]...); err != nil {
		t.Fatalf("host-creds: %v\n%s", err, out)
	}
	// The webhook sink and hostd, on the compose hostd.yaml.
	a = local(argv(p.Services["webhook-sink"]), 0)
	start(t, dir, "webhook-sink", nil, true, bin(a), a[1:]...)
	hd := p.Services["hostd"]
	cfgPath, _ := flagValue(argv(hd), "--config")
	m, _ := mountOf(hd, cfgPath)
	cfg := replaceAll(t, readFile(t, m.Source),
		"/usr/local/lib/plugbus/plugins", filepath.Dir(img.files["/usr/local/lib/plugbus/plugins/incrementer"]),
		"/var/lib/plugbus/host-creds", hostCreds,
		"/var/lib/plugbus/hostd", filepath.Join(dir, "hostd-state"))
	cfgFile := filepath.Join(dir, "hostd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"NATS_URL=" + natsURL, fmt.Sprintf("SINK=127.0.0.1:%d", sinkPort)}
	for k, v := range hd.Environment {
		if v != nil && k != "NATS_URL" && k != "SINK" {
			env = append(env, k+"="+*v)
		}
	}
	a = argv(hd)
	args := []string{"--config=" + cfgFile}
	for _, x := range a[1:] {
		if !strings.HasPrefix(x, "--config") {
			args = append(args, x)
		}
	}
	start(t, dir, "hostd", env, true, bin(a), args...)

	waitFor(t, "host compose-1 UP with its 3 plugins running", 60*time.Second, func() (bool, string) {
		out, err := busctl("hosts", "ls")
		return err == nil && strings.Contains(out, "compose-1") && strings.Contains(out, "UP") && strings.Contains(out, "3/3"), out
	})
	waitFor(t, "the 3 plugins ACTIVE", 30*time.Second, func() (bool, string) {
		out, err := busctl("plugins", "ls")
		return err == nil && strings.Count(out, "ACTIVE") == 3, out
	})

	// The streams are R3, on the three nodes.
	nc, err := nats.Connect(natsURL, nats.UserCredentials(admin))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	si, err := js.StreamInfo("PLUGBUS_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Fatalf("PLUGBUS_EVENTS: %d replicas, cluster %+v", si.Config.Replicas, si.Cluster)
	}
	t.Logf("PLUGBUS_EVENTS: R%d, leader %s", si.Config.Replicas, si.Cluster.Leader)

	// An action through a plugin, an alert through notify-webhook to the sink.
	if out, err := busctl("machine", "action", "m1", "increment", "-o", "json"); err != nil || !strings.Contains(out, `"value": 1`) {
		t.Fatalf("machine action: %v\n%s", err, out)
	}
	if out, err := busctl("alert", "fire", "--severity", "critical", "--summary", "compose topology check"); err != nil {
		t.Fatalf("alert fire: %v\n%s", err, out)
	}
	waitFor(t, "the alert at the webhook sink", 30*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "webhook-sink.log"))
		return bytes.Contains(b, []byte("compose topology check")), string(b)
	})
	var hosts []map[string]any
	if out, err := busctl("hosts", "ls", "-o", "json"); err == nil {
		_ = json.Unmarshal([]byte(out), &hosts)
	}
	t.Logf("hosts: %v", hosts)
}
