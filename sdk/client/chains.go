package client

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// ChainGet returns a hook chain run from the broker's chain journal
// (schemas.APIChainsGet): its steps so far (outcome schemas.ChainRunning
// until it is finished) and the operation it belongs to, with that
// operation's answer once it has one. A caller that gave up waiting on an
// operation reads its answer so, by any of its chains' ids.
// schemas.ErrNotFound when the journal does not have the chain (unknown,
// or older than the broker's chain retention).
func (c *Client) ChainGet(ctx context.Context, id string) (*schemas.ChainStatus, error) {
	var resp schemas.ChainStatus
	if err := c.Call(ctx, schemas.APIChainsGet, schemas.ChainGetRequest{ID: id}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ChainList returns the newest chain runs of the chain journal
// (schemas.APIChainsList), newest first, narrowed by req's object and hook
// point.
func (c *Client) ChainList(ctx context.Context, req schemas.ChainListRequest) (*schemas.ChainListResponse, error) {
	var resp schemas.ChainListResponse
	if err := c.Call(ctx, schemas.APIChainsList, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
