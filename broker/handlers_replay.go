package broker

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// handlePluginReplay serves plugins.replay (admin): it starts redelivering
// past events to one plugin (replay.go).
func (b *Broker) handlePluginReplay(ctx context.Context, req *schemas.PluginReplayRequest) (any, error) {
	return b.startReplay(ctx, req)
}

// handlePluginReplayStatus serves plugins.replay-status (admin).
func (b *Broker) handlePluginReplayStatus(ctx context.Context, req *schemas.PluginGetRequest) (any, error) {
	return b.replayStatus(ctx, req.Name)
}

// handlePluginReplayCancel serves plugins.replay-cancel (admin).
func (b *Broker) handlePluginReplayCancel(ctx context.Context, req *schemas.PluginGetRequest) (any, error) {
	return b.cancelReplay(ctx, req.Name)
}
