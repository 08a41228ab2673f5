package client

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// ReplayPlugin starts redelivering past events to one plugin
// (schemas.APIPluginsReplay, admin only; docs/replay.md): those of its
// subscribed types, or of req.Types, stored from req.FromSeq or req.FromTime
// on, up to the last event its durable consumer had been given. The plugin
// keeps its place for new events. The reply says how many events the
// replay covers; follow it with ReplayStatus until Done. The broker refuses
// a plugin that is not ACTIVE (schemas.ErrNotActive), one already
// replaying (schemas.ErrConflict), and a type the plugin does not consume
// (schemas.ErrInvalidField).
func (c *Client) ReplayPlugin(ctx context.Context, req schemas.PluginReplayRequest) (*schemas.ReplayStatus, error) {
	var resp schemas.ReplayStatus
	if err := c.Call(ctx, schemas.APIPluginsReplay, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ReplayStatus returns how far a plugin's replay has got
// (schemas.APIPluginsReplayStatus); schemas.ErrNotFound when none runs. The
// status that reports Done is the last: the broker then removes the
// replay.
func (c *Client) ReplayStatus(ctx context.Context, name string) (*schemas.ReplayStatus, error) {
	var resp schemas.ReplayStatus
	if err := c.Call(ctx, schemas.APIPluginsReplayStatus, schemas.PluginGetRequest{Name: name}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// CancelReplay stops a plugin's replay (schemas.APIPluginsReplayCancel):
// events it has not delivered yet are not. It returns the replay's last
// status.
func (c *Client) CancelReplay(ctx context.Context, name string) (*schemas.ReplayStatus, error) {
	var resp schemas.ReplayStatus
	if err := c.Call(ctx, schemas.APIPluginsReplayCancel, schemas.PluginGetRequest{Name: name}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
