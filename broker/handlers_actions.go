package broker

import (
	"context"
	"sort"

	"github.com/plugbus/plugbus/schemas"
)

// defaultActionList bounds actions.list when the request does not.
const defaultActionList = 100

// handleActionGet serves actions.get (admin).
func (b *Broker) handleActionGet(ctx context.Context, req *schemas.ActionRef) (any, error) {
	row, err := b.readAction(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	return row.ActionRecord, nil
}

// handleActionList serves actions.list (admin): newest first.
func (b *Broker) handleActionList(ctx context.Context, req *schemas.ActionListRequest) (any, error) {
	rows, err := listJSON[actionRow](ctx, b.st.actions)
	if err != nil {
		return nil, err
	}
	out := []schemas.ActionRecord{}
	for _, r := range rows {
		switch {
		case req.Machine != "" && r.Object != req.Machine:
		case req.Status == schemas.ActionStatusActive && schemas.ActionFinal(r.Status):
		case req.Status != "" && req.Status != schemas.ActionStatusActive && r.Status != req.Status:
		default:
			out = append(out, r.ActionRecord)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	limit := req.Limit
	if limit == 0 {
		limit = defaultActionList
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return schemas.ActionListResponse{Actions: out}, nil
}

// handleActionCancel serves actions.cancel (admin).
func (b *Broker) handleActionCancel(ctx context.Context, req *schemas.ActionCancelRequest) (any, error) {
	return b.cancelAction(ctx, req)
}

// handleActionProgress serves actions.progress.<plugin>: the plugin the
// action was routed to reports progress.
func (b *Broker) handleActionProgress(ctx context.Context, req *schemas.ActionProgressRequest) (any, error) {
	return b.recordProgress(ctx, callerName(ctx), req)
}

// handleActionComplete serves actions.complete.<plugin>: the plugin the
// action was routed to reports its end.
func (b *Broker) handleActionComplete(ctx context.Context, req *schemas.ActionCompleteRequest) (any, error) {
	return b.completeAction(ctx, callerName(ctx), req)
}
