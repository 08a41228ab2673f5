package client

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// Identities: each plugin and each host connects with credentials of its
// own, which the broker issues and revokes (docs/security.md). These calls
// need the admin's credentials, but HostPluginCreds, which a host makes
// for the plugins placed on it.

// PluginCreds issues new credentials for a plugin (schemas.APIPluginsCreds):
// a standard .creds file in CredsResponse.Creds, which also lifts a block
// a revocation set. Keep it secret: write it 0600.
func (c *Client) PluginCreds(ctx context.Context, plugin string) (*schemas.CredsResponse, error) {
	var resp schemas.CredsResponse
	if err := c.Call(ctx, schemas.APIPluginsCreds, schemas.CredsRequest{Name: plugin}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// RevokePlugin makes every credential ever issued to a plugin useless and
// cuts off its connections (schemas.APIPluginsRevoke); hosts cannot get
// new ones for it until PluginCreds is called again.
func (c *Client) RevokePlugin(ctx context.Context, plugin string) (*schemas.RevokeResponse, error) {
	var resp schemas.RevokeResponse
	if err := c.Call(ctx, schemas.APIPluginsRevoke, schemas.CredsRequest{Name: plugin}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// HostCreds issues a host's credentials (schemas.APIHostsCreds), naming
// the plugins placed on it ("*" for any): its hostd may obtain
// credentials for those plugins only.
func (c *Client) HostCreds(ctx context.Context, host string, plugins []string) (*schemas.CredsResponse, error) {
	var resp schemas.CredsResponse
	if err := c.Call(ctx, schemas.APIHostsCreds, schemas.HostCredsRequest{Name: host, Plugins: plugins}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// RevokeHost makes every credential issued to a host useless and cuts off
// its hostd (schemas.APIHostsRevoke).
func (c *Client) RevokeHost(ctx context.Context, host string) (*schemas.RevokeResponse, error) {
	var resp schemas.RevokeResponse
	if err := c.Call(ctx, schemas.APIHostsRevoke, schemas.CredsRequest{Name: host}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// HostPluginCreds is what a hostd calls, with its host's credentials, to
// get credentials for a plugin placed on its host
// (schemas.APIHostsPluginCreds, on the host's own subject). Any other
// plugin is refused with schemas.ErrForbidden.
func (c *Client) HostPluginCreds(ctx context.Context, host, plugin string) (*schemas.CredsResponse, error) {
	var resp schemas.CredsResponse
	if err := c.Call(ctx, schemas.APIHostsPluginCreds+"."+host, schemas.CredsRequest{Name: plugin}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
