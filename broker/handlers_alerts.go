package broker

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/plugbus/plugbus/schemas"
)

func (b *Broker) handleAlertFire(ctx context.Context, req *schemas.AlertFireRequest) (any, error) {
	id := req.ID
	if id == "" {
		id = uuid.NewString()
	}
	now := time.Now().UTC()
	alert, err := updateJSON(ctx, b.st.alerts, id, func(cur *schemas.Alert, _ bool) error {
		*cur = schemas.Alert{ID: id, Severity: req.Severity, Summary: req.Summary, Labels: req.Labels,
			Status: schemas.AlertFiring, FiredAt: now}
		return nil
	})
	if err != nil {
		return nil, err
	}
	eid, err := b.pub.Publish(ctx, schemas.TypeAlertFired, alert)
	if err != nil {
		return nil, err
	}
	b.log.Info().Str(FieldAlert, id).Str("severity", alert.Severity).Str(FieldEventID, eid).Msg("alert fired")
	return schemas.AlertResponse{Alert: alert, EventID: eid}, nil
}

func (b *Broker) handleAlertResolve(ctx context.Context, req *schemas.AlertRef) (any, error) {
	now := time.Now().UTC()
	alert, err := updateJSON(ctx, b.st.alerts, req.ID, func(cur *schemas.Alert, exists bool) error {
		if !exists {
			return schemas.Errorf(schemas.CodeNotFound, "id", "alert %q does not exist", req.ID)
		}
		if cur.Status == schemas.AlertResolved {
			return schemas.Errorf(schemas.CodeConflict, "id", "alert %q is already resolved", req.ID)
		}
		cur.Status = schemas.AlertResolved
		cur.ResolvedAt = &now
		return nil
	})
	if err != nil {
		return nil, err
	}
	eid, err := b.pub.Publish(ctx, schemas.TypeAlertResolved, alert)
	if err != nil {
		return nil, err
	}
	b.log.Info().Str(FieldAlert, req.ID).Str(FieldEventID, eid).Msg("alert resolved")
	return schemas.AlertResponse{Alert: alert, EventID: eid}, nil
}
