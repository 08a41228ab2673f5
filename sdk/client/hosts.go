package client

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// Hosts are the machines a hostd runs plugins on. Each hostd reports its
// host and instances to the broker; the calls below read those reports and
// write operators' overrides, which the hostd of the host follows: they
// return once the override is stored, not once hostd has acted on it
// (GetHost shows when it has).

// ListHosts returns the hosts whose hostd has reported, sorted by name
// (schemas.APIHostsList). An empty state lists every host; otherwise only
// hosts in that state (schemas.HostUp, schemas.HostLost,
// schemas.HostStopped) are returned.
func (c *Client) ListHosts(ctx context.Context, state schemas.HostState) ([]schemas.Host, error) {
	var resp schemas.HostListResponse
	if err := c.Call(ctx, schemas.APIHostsList, schemas.HostListRequest{State: state}, &resp); err != nil {
		return nil, err
	}
	return resp.Hosts, nil
}

// GetHost returns one host with its plugin instances
// (schemas.APIHostsGet); a host that never reported yields
// schemas.ErrNotFound (with details kind "host").
func (c *Client) GetHost(ctx context.Context, name string) (*schemas.Host, error) {
	var resp schemas.Host
	if err := c.Call(ctx, schemas.APIHostsGet, schemas.HostRef{Name: name}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// EnablePlugin lets the hostd of host run plugin name again
// (schemas.APIPluginsEnable): the override wins over the host's config
// file, and hostd starts the plugin if the host's labels place it there.
// host is required; a host that never reported yields
// schemas.ErrNotFound. The reply lists the override written.
func (c *Client) EnablePlugin(ctx context.Context, name, host string) (*schemas.PluginHostResponse, error) {
	return c.pluginHost(ctx, schemas.APIPluginsEnable, name, host)
}

// DisablePlugin makes the hostd of host stop plugin name and keep it
// stopped (schemas.APIPluginsDisable) until EnablePlugin; the override
// wins over the host's config file. host is required; a host that never
// reported yields schemas.ErrNotFound. The reply lists the override
// written.
func (c *Client) DisablePlugin(ctx context.Context, name, host string) (*schemas.PluginHostResponse, error) {
	return c.pluginHost(ctx, schemas.APIPluginsDisable, name, host)
}

// RestartPlugin asks hostd to restart the instances of plugin name
// (schemas.APIPluginsRestart): on host, or with host "" on every host that
// reports an instance of it (schemas.ErrNotFound when none does). The
// reply lists one override per host asked.
func (c *Client) RestartPlugin(ctx context.Context, name, host string) (*schemas.PluginHostResponse, error) {
	return c.pluginHost(ctx, schemas.APIPluginsRestart, name, host)
}

func (c *Client) pluginHost(ctx context.Context, endpoint, name, host string) (*schemas.PluginHostResponse, error) {
	var resp schemas.PluginHostResponse
	if err := c.Call(ctx, endpoint, schemas.PluginHostRequest{Name: name, Host: host}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
