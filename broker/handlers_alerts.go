package broker

import (
	"context"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
)

// handleAlertFire runs alert.pre_notify (which may add labels or suppress
// the alert), stores the alert and publishes its fired event unless it was
// suppressed.
func (b *Broker) handleAlertFire(ctx context.Context, req *schemas.AlertFireRequest) (any, error) {
	in := *req
	op := opID(ctx)
	if in.ID == "" {
		// From the operation: a retry with the same idempotency key fires
		// the same alert.
		in.ID = uuid.NewSHA1(uuid.NameSpaceOID, []byte("plugbus/alert/"+op)).String()
	}
	object := "alert/" + in.ID
	run, err := b.runChain(ctx, schemas.HookAlertPreNotify, object, in, nil)
	if err != nil {
		return nil, err
	}
	chains := appendRun(nil, run)
	status := schemas.AlertFiring
	if run.err != nil {
		if run.record.Outcome != schemas.ChainRejected {
			run.err.Details = withChains(run.err.Details, chains)
			return nil, run.err
		}
		status = schemas.AlertSuppressed
	} else if run.ran {
		var patched schemas.AlertFireRequest
		if err := schemas.Decode(schemas.APIAlertFireRequest, run.payload, &patched); err != nil {
			e := schemas.AsError(err)
			e.Message = "alert.pre_notify changed the alert into an invalid one: " + e.Message
			e.Details = withChains(e.Details, chains)
			return nil, e
		}
		patched.ID = in.ID
		in = patched
	}
	now := time.Now().UTC()
	res, err := commitRecord(ctx, b, b.st.alerts, in.ID, op, func(cur *schemas.Alert, _ bool) ([]*event.Event, time.Duration, error) {
		*cur = schemas.Alert{ID: in.ID, Severity: in.Severity, Summary: in.Summary, Labels: in.Labels,
			Status: status, FiredAt: now}
		if status == schemas.AlertSuppressed {
			// Nothing fired: the record is final at once.
			return nil, b.cfg.AlertRetention, nil
		}
		ev, err := NewEvent(schemas.TypeAlertFired, *cur, WithSubject(object))
		return []*event.Event{ev}, 0, err
	})
	if err != nil {
		e := schemas.AsError(err)
		e.Details = withChains(e.Details, chains)
		return nil, e
	}
	alert := res.Record
	if status == schemas.AlertSuppressed {
		b.log.Info().Str(logging.FieldAlert, in.ID).Str(logging.FieldPlugin, run.err.Plugin).Str(logging.FieldReason, run.err.Message).Msg("alert suppressed")
		return schemas.AlertResponse{Alert: alert, Chains: chains}, nil
	}
	eid := firstID(res.EventIDs)
	b.log.Info().Str(logging.FieldAlert, in.ID).Str("severity", alert.Severity).Str(logging.FieldEventID, eid).Bool("replayed", res.Replayed).Msg("alert fired")
	return schemas.AlertResponse{Alert: alert, EventID: eid, Chains: chains}, nil
}

func (b *Broker) handleAlertResolve(ctx context.Context, req *schemas.AlertRef) (any, error) {
	now := time.Now().UTC()
	res, err := commitRecord(ctx, b, b.st.alerts, req.ID, opID(ctx), func(cur *schemas.Alert, exists bool) ([]*event.Event, time.Duration, error) {
		if !exists {
			e := schemas.Errorf(schemas.CodeNotFound, "id", "alert %q does not exist", req.ID)
			e.Details = map[string]any{schemas.DetailKind: "alert", schemas.DetailName: req.ID}
			return nil, 0, e
		}
		if cur.Status == schemas.AlertResolved {
			return nil, 0, schemas.Errorf(schemas.CodeConflict, "id", "alert %q is already resolved", req.ID)
		}
		if cur.Status == schemas.AlertSuppressed {
			return nil, 0, schemas.Errorf(schemas.CodeConflict, "id", "alert %q was suppressed by alert.pre_notify and never fired: nothing to resolve", req.ID)
		}
		cur.Status = schemas.AlertResolved
		cur.ResolvedAt = &now
		ev, err := NewEvent(schemas.TypeAlertResolved, *cur, WithSubject("alert/"+req.ID))
		// A resolved alert is kept for the retention, then leaves the bucket.
		return []*event.Event{ev}, b.cfg.AlertRetention, err
	})
	if err != nil {
		return nil, err
	}
	eid := firstID(res.EventIDs)
	b.log.Info().Str(logging.FieldAlert, req.ID).Str(logging.FieldEventID, eid).Bool("replayed", res.Replayed).Msg("alert resolved")
	return schemas.AlertResponse{Alert: res.Record, EventID: eid}, nil
}
