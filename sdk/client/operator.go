package client

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// VerifyPlugin asks a plugin again whether it is ready
// (schemas.APIPluginsVerify) and returns its record: an ACTIVE plugin runs
// verify, one in ERROR its whole lifecycle again. A plugin that is not
// ready fails with schemas.ErrPluginError (its record then holds the
// error); a STALE one with schemas.ErrNotActive.
func (c *Client) VerifyPlugin(ctx context.Context, name string) (*schemas.PluginRecord, error) {
	var resp schemas.PluginRecord
	if err := c.Call(ctx, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: name}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListAlerts returns the alerts the broker keeps, oldest fired first
// (schemas.APIAlertsList); a non-empty status keeps one status.
func (c *Client) ListAlerts(ctx context.Context, status string) ([]schemas.Alert, error) {
	var resp schemas.AlertListResponse
	if err := c.Call(ctx, schemas.APIAlertsList, schemas.AlertListRequest{Status: status}, &resp); err != nil {
		return nil, err
	}
	return resp.Alerts, nil
}

// GetAlert returns one alert (schemas.APIAlertsGet); an unknown id yields
// schemas.ErrNotFound.
func (c *Client) GetAlert(ctx context.Context, id string) (*schemas.Alert, error) {
	var resp schemas.Alert
	if err := c.Call(ctx, schemas.APIAlertsGet, schemas.AlertRef{ID: id}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// GetEvent returns one message of the event stream by stream sequence or
// CloudEvent id, exactly one of them (schemas.APIEventsGet).
func (c *Client) GetEvent(ctx context.Context, req schemas.EventGetRequest) (*schemas.StoredMessage, error) {
	var resp schemas.StoredMessage
	if err := c.Call(ctx, schemas.APIEventsGet, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListDeadLetters returns a page of dead letters, oldest first
// (schemas.APIDLQList); the reply's NextSeq is where the next page starts.
func (c *Client) ListDeadLetters(ctx context.Context, req schemas.DLQListRequest) (*schemas.DLQListResponse, error) {
	var resp schemas.DLQListResponse
	if err := c.Call(ctx, schemas.APIDLQList, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// GetDeadLetter returns one dead letter with the message as stored
// (schemas.APIDLQGet).
func (c *Client) GetDeadLetter(ctx context.Context, seq uint64) (*schemas.DeadLetter, error) {
	var resp schemas.DeadLetter
	if err := c.Call(ctx, schemas.APIDLQGet, schemas.DLQRef{Seq: seq}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ReplayDeadLetters replays dead letters, each to the consumer that gave
// up on it, once (schemas.APIDLQReplay): one result per sequence, in
// order. At most schemas.MaxDLQPage per call.
func (c *Client) ReplayDeadLetters(ctx context.Context, req schemas.DLQReplayRequest) (*schemas.DLQReplayResponse, error) {
	var resp schemas.DLQReplayResponse
	if err := c.Call(ctx, schemas.APIDLQReplay, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// PurgeDeadLetters removes dead letters (schemas.APIDLQPurge).
func (c *Client) PurgeDeadLetters(ctx context.Context, req schemas.DLQPurgeRequest) (*schemas.DLQPurgeResponse, error) {
	var resp schemas.DLQPurgeResponse
	if err := c.Call(ctx, schemas.APIDLQPurge, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
