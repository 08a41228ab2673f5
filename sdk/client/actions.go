package client

import (
	"context"
	"errors"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// GetAction returns an action's record (schemas.APIActionsGet, admin):
// its status, its last progress report and, once it ended, its result or
// error. schemas.ErrNotFound for an unknown id (or one older than the
// broker's action retention).
func (c *Client) GetAction(ctx context.Context, id string) (*schemas.ActionRecord, error) {
	var resp schemas.ActionRecord
	if err := c.Call(ctx, schemas.APIActionsGet, schemas.ActionRef{ID: id}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListActions lists actions, newest first (schemas.APIActionsList, admin).
func (c *Client) ListActions(ctx context.Context, req schemas.ActionListRequest) ([]schemas.ActionRecord, error) {
	var resp schemas.ActionListResponse
	if err := c.Call(ctx, schemas.APIActionsList, req, &resp); err != nil {
		return nil, err
	}
	return resp.Actions, nil
}

// CancelAction cancels an action that has not ended (schemas.APIActionsCancel,
// admin): the action ends as cancelled and the handler running it sees its
// context cancelled, with a schemas.ErrCancelled cause carrying reason.
// schemas.ErrConflict for an action that has ended.
func (c *Client) CancelAction(ctx context.Context, id, reason string) (*schemas.ActionCancelResponse, error) {
	var resp schemas.ActionCancelResponse
	if err := c.Call(ctx, schemas.APIActionsCancel, schemas.ActionCancelRequest{ID: id, Reason: reason}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// DefaultActionPoll is how often WaitAction reads an action's record.
const DefaultActionPoll = 250 * time.Millisecond

// WaitAction reads an action's record every poll (DefaultActionPoll when
// zero) until it has ended or ctx ends, calling seen (when not nil) with
// every record that differs from the one before, the first and the last
// included. It returns the last record read. A broker that does not answer
// for a while (restarting) is waited for, within ctx.
func (c *Client) WaitAction(ctx context.Context, id string, poll time.Duration, seen func(*schemas.ActionRecord)) (*schemas.ActionRecord, error) {
	if poll <= 0 {
		poll = DefaultActionPoll
	}
	var last *schemas.ActionRecord
	for {
		rec, err := c.GetAction(ctx, id)
		switch {
		case err == nil:
			if seen != nil && (last == nil || rec.UpdatedAt != last.UpdatedAt || rec.Status != last.Status) {
				seen(rec)
			}
			last = rec
			if schemas.ActionFinal(rec.Status) {
				return rec, nil
			}
		case ctx.Err() != nil:
			return last, ctx.Err()
		case errors.Is(err, schemas.ErrNoResponders) || errors.Is(err, schemas.ErrTimeout):
			// No broker right now: keep waiting.
		default:
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(poll):
		}
	}
}
