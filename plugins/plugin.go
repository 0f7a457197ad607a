package plugins

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	trainerpb "simpletuner/plugins/proto"
)

// GRPCPlugin adapts a Trainer to go-plugin. The daemon uses it with a nil Impl; a trainer
// binary sets Impl to its implementation.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Trainer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the trainer's gRPC service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	trainerpb.RegisterTrainerServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns the daemon-side Trainer that calls the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{c: trainerpb.NewTrainerClient(c)}, nil
}

// PluginSet is the plugin map both sides register.
func PluginSet(impl Trainer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}
