package testnats

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/plugbus/plugbus/wire"
)

// Cluster is an in-process nats-server cluster with JetStream on
// loopback: every node keeps its client port, cluster port and store
// across a Stop and Restart, so clients reconnect to it as to a restarted
// server.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	opts *server.Options
	srv  *server.Server
}

// StartCluster starts an n-node cluster (n ≥ 1) and returns once
// JetStream has a meta leader. The nodes stop when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, &clusterNode{opts: &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			MaxPayload: 8 << 20,
			Cluster: server.ClusterOpts{Name: "plugbus-test", Host: "127.0.0.1", Port: routePorts[i],
				// As deployments/compose: a frozen peer is dropped within seconds.
				PingInterval: wire.StalePingInterval, MaxPingsOut: wire.StaleMaxPings},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}})
	}
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.start(i) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Stop(i)
		}
	})
	c.WaitJetStream(t)
	return c
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(t)
	}
	return ports
}

// FreePort returns a loopback TCP port that is free now, for a server
// started on it shortly after (and maybe restarted on it later).
//
// The port is below the kernel's ephemeral range (32768–60999 on Linux),
// where "127.0.0.1:0" would put it: a port from that range, free again
// until the server listens, can meanwhile become the source port of any
// outbound connection on the machine (make test runs several test
// processes side by side), and a node restarted on its ports finds them
// taken. This process never hands out a port twice.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := portLow + rand.IntN(portHigh-portLow)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port in %d-%d on 127.0.0.1", portLow, portHigh)
	return 0
}

// The range FreePort picks from.
const portLow, portHigh = 20000, 32000

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func (c *Cluster) start(i int) {
	c.mu.Lock()
	nd := c.nodes[i]
	c.mu.Unlock()
	opts := *nd.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		c.t.Errorf("node %d: %v", i, err)
		return
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		c.t.Errorf("node %d not ready within 20s", i)
		return
	}
	c.mu.Lock()
	nd.srv = s
	c.mu.Unlock()
}

// N is the number of nodes.
func (c *Cluster) N() int { return len(c.nodes) }

// URL is every node's client URL, comma-separated, as clients take it.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// URLs are the nodes' client URLs (the same across restarts).
func (c *Cluster) URLs() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", nd.opts.Port))
	}
	return out
}

// Name is node i's server name.
func (c *Cluster) Name(i int) string { return c.nodes[i].opts.ServerName }

// Server is node i's server, nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Stop shuts node i down (as a SIGTERM would: its raft leaderships are
// handed over first). Stopping a stopped node does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts a stopped node i again on its ports and store, and waits
// until it accepts connections.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Stop(i)
	c.start(i)
}

// Index is the index of the node named name, -1 when none is.
func (c *Cluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.opts.ServerName == name {
			return i
		}
	}
	return -1
}

// WaitJetStream waits until JetStream answers through the running nodes
// (a meta leader is elected).
func (c *Cluster) WaitJetStream(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.jetStreamUp() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("JetStream has no meta leader after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) jetStreamUp() bool {
	nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// StreamLeader returns the index of the node leading stream (in the
// default account), -1 when it has no leader now.
func (c *Cluster) StreamLeader(stream string) int {
	nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second))
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return -1
	}
	return c.Index(info.Cluster.Leader)
}
