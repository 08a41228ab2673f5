package main

import (
	"context"
	"net/rpc"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The go-plugin side of the comparison: one interface, served over
// go-plugin's net/rpc and gRPC protocols, doing the topology case's hook
// work (bench.StampJob).

// Stamper is what every plugin process implements.
type Stamper interface {
	Stamp(ctx context.Context, in []byte) ([]byte, error)
}

// handshake is the go-plugin handshake of peerbench's plugins.
var handshake = plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "PEERBENCH_PLUGIN_COOKIE", MagicCookieValue: "stamp"}

// pluginName is the name of the one plugin each process serves.
const pluginName = "stamp"

// --- net/rpc ---

// rpcPlugin is the plugin.Plugin of the net/rpc protocol.
type rpcPlugin struct{ impl Stamper }

var _ plugin.Plugin = (*rpcPlugin)(nil)

func (p *rpcPlugin) Server(*plugin.MuxBroker) (any, error) { return &rpcServer{impl: p.impl}, nil }

func (*rpcPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return &rpcClient{c: c}, nil
}

// rpcServer is the net/rpc receiver in the plugin process.
type rpcServer struct{ impl Stamper }

// Stamp is the net/rpc method.
func (s *rpcServer) Stamp(in []byte, out *[]byte) error {
	b, err := s.impl.Stamp(context.Background(), in)
	*out = b
	return err
}

// rpcClient is the host's stub.
type rpcClient struct{ c *rpc.Client }

func (c *rpcClient) Stamp(_ context.Context, in []byte) ([]byte, error) {
	var out []byte
	err := c.c.Call("Plugin.Stamp", in, &out)
	return out, err
}

// --- gRPC ---

// grpcPlugin is the plugin.GRPCPlugin of the gRPC protocol. The service is
// described by hand (one unary method taking and returning
// google.protobuf.BytesValue), so no generated code is needed; the work on
// the wire is what protoc-generated stubs do.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Stamper
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

// stampService is the handler type of the hand-written service.
type stampService interface {
	Stamp(ctx context.Context, in []byte) ([]byte, error)
}

const stampMethod = "/peerbench.Stamper/Stamp"

var stampServiceDesc = grpc.ServiceDesc{
	ServiceName: "peerbench.Stamper",
	HandlerType: (*stampService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Stamp",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			out, err := srv.(stampService).Stamp(ctx, in.Value)
			if err != nil {
				return nil, err
			}
			return wrapperspb.Bytes(out), nil
		},
	}},
	Metadata: "peerbench",
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&stampServiceDesc, p.impl)
	return nil
}

func (*grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &grpcClient{cc: cc}, nil
}

// grpcClient is the host's stub.
type grpcClient struct{ cc *grpc.ClientConn }

func (c *grpcClient) Stamp(ctx context.Context, in []byte) ([]byte, error) {
	out := new(wrapperspb.BytesValue)
	if err := c.cc.Invoke(ctx, stampMethod, wrapperspb.Bytes(in), out); err != nil {
		return nil, err
	}
	return out.Value, nil
}
