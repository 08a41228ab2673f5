package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// The cluster scenarios run the bus as it runs in production: three
// nats-server processes (built from the module's nats-server, configured
// by files in the server's own format, JetStream with R3 streams, auth
// from `broker auth init`) and two or three bin/broker processes on them
// with --nats-url and --replicas 3 (docs/scale-out.md).

var (
	natsOnce sync.Once
	natsBin  string
	natsErr  error
)

// natsServer builds nats-server (the version in go.mod) into the suite's
// bin dir, once.
func natsServer(t *testing.T) string {
	t.Helper()
	dir := build(t)
	natsOnce.Do(func() {
		natsBin = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			natsErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsErr != nil {
		t.Fatal(natsErr)
	}
	return natsBin
}

// natsNode is one nats-server process of the cluster; its ports, config
// and store stay the same across restarts.
type natsNode struct {
	name                  string
	client, route, status string // host:port
	conf                  string
	p                     *proc
	starts                int
}

// brokerNode is one broker process on the cluster.
type brokerNode struct {
	http   string
	p      *proc
	starts int
}

// cluster is a three-node NATS cluster with brokers on it. Its bus (the
// suite's usual client side: admin, JetStream for the checker, plugins)
// reaches every node.
type cluster struct {
	*bus
	natsBin    string
	authDir    string
	auth       *broker.ExternalAuth
	nodes      []*natsNode
	brokers    []*brokerNode
	brokerArgs []string
}

// newCluster starts three nats-server nodes and nBrokers brokers (each
// with brokerArgs) and waits until every broker is healthy.
func newCluster(t *testing.T, nBrokers int, brokerArgs ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{natsBin: natsServer(t), authDir: filepath.Join(dir, "auth"), brokerArgs: brokerArgs}
	var err error
	c.auth, err = broker.InitExternalAuth(c.authDir, "plugbus")
	if err != nil {
		t.Fatal(err)
	}
	// The suite's bus finds the admin's credentials at DATA_DIR/creds and
	// the broker's at DATA_DIR/auth: link the latter.
	if err := os.MkdirAll(filepath.Join(c.authDir, "auth"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.auth.BrokerCreds, filepath.Join(c.authDir, "auth", "broker.creds")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("n%d", i), client: freeAddr(t), route: freeAddr(t), status: freeAddr(t)})
	}
	var routes, urls []string
	for _, n := range c.nodes {
		routes = append(routes, fmt.Sprintf("%q", "nats-route://"+n.route))
		urls = append(urls, "nats://"+n.client)
	}
	for _, n := range c.nodes {
		n.conf = filepath.Join(c.authDir, n.name+".conf")
		conf := fmt.Sprintf(`# plugbus fault suite: node %[1]s of a three-node JetStream cluster
server_name: %[1]s
listen: %[2]q
http: %[3]q
max_payload: 8MB
jetstream {
  store_dir: %[4]q
  max_memory_store: 256MB
  max_file_store: 64GB
}
cluster {
  name: plugbus-faults
  listen: %[5]q
  routes: [%[6]s]
  # A frozen peer's routes are dropped within seconds, as in
  # deployments/compose (docs/scale-out.md).
  ping_interval: "2s"
  ping_max: 3
}
include plugbus-auth.conf
`, n.name, n.client, n.status, filepath.Join(dir, "js-"+n.name), n.route, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.bus = &bus{t: t, bin: build(t), dataDir: c.authDir, url: strings.Join(urls, ",")}
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.startNode(t, i) })
	}
	wg.Wait()
	c.waitJetStream(t)
	// The clients leave a frozen node within seconds, as every plugbus
	// component does (the default ping interval would keep them on it for
	// minutes).
	fast := wire.StaleServerOptions()
	c.bus.adminOnce.Do(func() {
		c.bus.adminNC = c.connect(t, c.adminCreds(), fast...)
		c.bus.adminC = client.New(c.bus.adminNC, client.WithRetryFor(30*time.Second))
	})
	c.bus.jsOnce.Do(func() {
		js, err := jetstream.New(c.connect(t, c.brokerCreds(), fast...))
		if err != nil {
			t.Fatal(err)
		}
		c.bus.js = js
	})
	for range nBrokers {
		c.brokers = append(c.brokers, &brokerNode{http: freeAddr(t)})
	}
	for i := range c.brokers {
		c.startBroker(t, i)
	}
	c.bus.httpAd = c.brokers[0].http
	return c
}

// startNode starts node i (again) and waits until it serves clients.
func (c *cluster) startNode(t *testing.T, i int) {
	n := c.nodes[i]
	n.starts++
	n.p = startProc(t, fmt.Sprintf("nats-%s#%d", n.name, n.starts), c.natsBin, nil, nil, "-c", n.conf)
	waitFor(t, "nats-server "+n.name+" up", waitLimit, func() bool {
		if n.p.exited() {
			t.Fatalf("nats-server %s exited: %v\n%s", n.name, n.p.err, n.p.out.String())
		}
		return httpOK("http://" + n.status + "/healthz?js-server-only=true")
	})
}

// nodeCurrent reports whether node i's JetStream is up and current with
// its peers (its /healthz answers 200).
func (c *cluster) nodeCurrent(i int) bool {
	return httpOK("http://" + c.nodes[i].status + "/healthz")
}

func httpOK(url string) bool {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitJetStream waits until every running node is current.
func (c *cluster) waitJetStream(t *testing.T) {
	t.Helper()
	waitFor(t, "every running NATS node current", waitLimit, func() bool {
		for i, n := range c.nodes {
			if n.p != nil && !n.p.exited() && !c.nodeCurrent(i) {
				return false
			}
		}
		return true
	})
}

// killNode is kill -9 of node i.
func (c *cluster) killNode(t *testing.T, i int) { c.nodes[i].p.kill9(t) }

// stopNode is SIGTERM of node i (its raft leaderships are handed over),
// waiting for the exit.
func (c *cluster) stopNode(t *testing.T, i int) {
	t.Helper()
	c.nodes[i].p.term(t)
	_ = c.nodes[i].p.wait(t, time.Minute)
}

// pauseNode freezes node i (SIGSTOP): its peers and clients hear nothing
// from it, as across a partition, until resumeNode.
func (c *cluster) pauseNode(t *testing.T, i int) {
	t.Helper()
	if err := c.nodes[i].p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) resumeNode(t *testing.T, i int) {
	t.Helper()
	if err := c.nodes[i].p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// nodeIndex is the index of the node named name, -1 for none.
func (c *cluster) nodeIndex(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// streamLeader is the name of the node leading stream now ("" when none
// answers).
func (c *cluster) streamLeader(t *testing.T, stream string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.jetstream(t).Stream(ctx, stream)
	if err != nil {
		return ""
	}
	if info := s.CachedInfo(); info.Cluster != nil {
		return info.Cluster.Leader
	}
	return ""
}

// startBroker starts broker i (again) on the cluster and waits until it
// is healthy.
func (c *cluster) startBroker(t *testing.T, i int) {
	t.Helper()
	bn := c.brokers[i]
	bn.starts++
	args := append([]string{"--nats-url", c.url, "--creds", c.auth.BrokerCreds, "--account-signing-key", c.auth.SigningKey,
		"--account", c.auth.Account, "--replicas", "3", "--http", bn.http, "--log-format", "json", "--log-level", "warn"}, c.brokerArgs...)
	bn.p = startProc(t, fmt.Sprintf("broker%d#%d", i, bn.starts), filepath.Join(c.bin, "broker"), nil, nil, args...)
	waitFor(t, fmt.Sprintf("broker %d /healthz", i), waitLimit, func() bool {
		if bn.p.exited() {
			t.Fatalf("broker %d exited while starting: %v\n%s", i, bn.p.err, bn.p.out.String())
		}
		return httpOK("http://" + bn.http + "/healthz")
	})
}

// role is what broker i's /healthz says it is ("leader", "follower"), ""
// when it does not answer.
func (c *cluster) role(i int) string {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + c.brokers[i].http + "/healthz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	return resp.Header.Get("Plugbus-Role")
}

// leaders lists the brokers that say they lead.
func (c *cluster) leaders() []int {
	var out []int
	for i, bn := range c.brokers {
		if !bn.p.exited() && c.role(i) == broker.RoleLeader {
			out = append(out, i)
		}
	}
	return out
}

// pubTimed publishes a plugin-style event straight to JetStream, as
// an SDK plugin's Publish does, and returns how long the answer took.
func pubTimed(ctx context.Context, js jetstream.JetStream, subject string, data []byte) (time.Duration, error) {
	start := time.Now()
	_, err := js.Publish(ctx, subject, data)
	return time.Since(start), err
}

// stalls measures the longest stretch without an acknowledgement during
// a load: the gap between consecutive acknowledgements (and from the
// start to the first), from the history's answer times.
func stalls(h *history, from, to time.Time) time.Duration {
	var at []time.Time
	for _, o := range h.snapshot() {
		if o.OK {
			at = append(at, o.At)
		}
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	longest := time.Duration(0)
	prev := from
	for _, a := range at {
		if a.After(to) {
			break
		}
		if d := a.Sub(prev); d > longest {
			longest = d
		}
		prev = a
	}
	return longest
}

// paced runs a load at a steady rate: every 1/rate a request is offered
// to the workers (which retry it until answered, as load does), until
// stop is closed; then the requests in flight finish. It returns how
// many were offered.
func (h *history) paced(ctx context.Context, l load, rate int, stop <-chan struct{}) int {
	if l.timeout == 0 {
		l.timeout = 5 * time.Second
	}
	jobs := make(chan int, l.workers)
	var wg sync.WaitGroup
	for range l.workers {
		wg.Go(func() {
			for i := range jobs {
				h.fire(ctx, l, i)
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	n := 0
loop:
	for ; n < l.n; n++ {
		select {
		case <-stop:
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		select {
		case jobs <- n:
		case <-stop:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	return n
}
