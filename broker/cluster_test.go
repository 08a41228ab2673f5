package broker

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// startCluster runs an in-process three-node NATS cluster with JetStream on
// loopback and returns the client URLs once JetStream has a meta leader.
func startCluster(t *testing.T) []string {
	t.Helper()
	const n = 3
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	urls := make([]string, n)
	for i := 0; i < n; i++ {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
			Cluster: server.ClusterOpts{Name: "plugbus-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster node not ready")
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		urls[i] = s.ClientURL()
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitFor(t, "JetStream meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return urls
}

// TestTwoBrokersOnR3Cluster runs two brokers against a three-node cluster
// with R3 streams and buckets: each API request is answered once, a plugin
// registered through one broker is routed by the other, and the events are
// replicated on three servers.
func TestTwoBrokersOnR3Cluster(t *testing.T) {
	urls := startCluster(t)
	b1 := startBroker(t, Config{NATSURL: urls[0], Replicas: 3})
	b2 := startBroker(t, Config{NATSURL: urls[2], Replicas: 3})
	ctx := context.Background()

	stream, err := b1.js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("event stream replicas %d, want 3", r)
	}

	p := newFakePlugin(t, urls[1], actionManifest("inc", schemas.ActionSpec{Command: "increment", Model: "machines"}))
	p.result = 1
	p.start("plugbus")
	if st := p.register(t, b1, nil).Plugin.State; st != schemas.StateActive {
		t.Fatalf("state %s", st)
	}
	// Each broker answers API calls; both route to the plugin. The API is one
	// queue group, so 20 calls reach the plugin exactly 20 times.
	for i := 0; i < 10; i++ {
		for _, tb := range []*testBus{b1, b2} {
			waitFor(t, "plugin routable on every broker", func() bool {
				return tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m", Command: "increment"}, nil) == nil
			})
		}
	}
	if n := len(p.lastActions()); n != 20 {
		t.Fatalf("plugin called %d times for 20 actions", n)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("event stream not replicated: %+v", info.Cluster)
	}
	if info.State.Msgs < 40 {
		t.Fatalf("stream holds %d events, want requested+completed for each of 20 actions", info.State.Msgs)
	}
}
