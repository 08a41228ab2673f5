package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/plugbus/plugbus/internal/bench"
)

// Environment of a peerbench plugin process (set by the host).
const (
	envProtocol = "PEERBENCH_PROTOCOL" // "netrpc" or "grpc"
	envStamp    = "PEERBENCH_STAMP"    // the stamp the process sets
)

// stamper does bench.StampJob.
type stamper struct{ stamp string }

func (s stamper) Stamp(_ context.Context, in []byte) ([]byte, error) {
	return bench.StampJob(in, s.stamp)
}

// servePlugin serves the plugin when this process was started as one by
// a go-plugin host, and reports whether it did.
func servePlugin() bool {
	proto := os.Getenv(envProtocol)
	if proto == "" || os.Getenv(handshake.MagicCookieKey) != handshake.MagicCookieValue {
		return false
	}
	impl := stamper{stamp: os.Getenv(envStamp)}
	cfg := &plugin.ServeConfig{HandshakeConfig: handshake, Logger: hclog.NewNullLogger()}
	switch proto {
	case "grpc":
		cfg.Plugins = plugin.PluginSet{pluginName: &grpcPlugin{impl: impl}}
		cfg.GRPCServer = plugin.DefaultGRPCServer
	default:
		cfg.Plugins = plugin.PluginSet{pluginName: &rpcPlugin{impl: impl}}
	}
	plugin.Serve(cfg)
	return true
}

// peer returns the bench.Peer of one go-plugin protocol, whose plugin
// processes are self.
func peer(self, proto string) bench.Peer {
	name := map[string]string{"netrpc": "go-plugin net/rpc", "grpc": "go-plugin gRPC"}[proto]
	return bench.Peer{
		Name:  name,
		Setup: fmt.Sprintf("hashicorp/go-plugin %s: one plugin process per step (this binary, started by plugin.NewClient), go-plugin's default transport (Unix socket), logging off", proto),
		Start: func(ctx context.Context, n int) (bench.PeerChain, error) { return startChain(self, proto, n) },
	}
}

// chain is n running go-plugin plugin processes.
type chain struct {
	clients []*plugin.Client
	stubs   []Stamper
}

func startChain(self, proto string, n int) (*chain, error) {
	c := &chain{}
	protocol := plugin.ProtocolNetRPC
	var set plugin.PluginSet = plugin.PluginSet{pluginName: &rpcPlugin{}}
	if proto == "grpc" {
		protocol = plugin.ProtocolGRPC
		set = plugin.PluginSet{pluginName: &grpcPlugin{}}
	}
	for i := range n {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), envProtocol+"="+proto, fmt.Sprintf("%s=%02d", envStamp, i))
		cl := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig: handshake, Plugins: set, Cmd: cmd,
			AllowedProtocols: []plugin.Protocol{protocol},
			Logger:           hclog.NewNullLogger(), SyncStdout: io.Discard, SyncStderr: io.Discard,
		})
		c.clients = append(c.clients, cl)
		rc, err := cl.Client()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start %s plugin %d: %w", proto, i, err)
		}
		raw, err := rc.Dispense(pluginName)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dispense %s plugin %d: %w", proto, i, err)
		}
		s, ok := raw.(Stamper)
		if !ok {
			c.Close()
			return nil, errors.New("dispensed plugin is not a Stamper")
		}
		c.stubs = append(c.stubs, s)
	}
	return c, nil
}

func (c *chain) Call(ctx context.Context, i int, in []byte) ([]byte, error) {
	return c.stubs[i].Stamp(ctx, in)
}

func (c *chain) Close() {
	for _, cl := range c.clients {
		cl.Kill()
	}
}
