package broker

// Long-running actions (docs/protocol.md#actions). Every action routed to a
// plugin is a record in the actions bucket, written before the plugin is
// called; each change to it (the plugin took it, reported progress, ended,
// ran out of time, was cancelled) is a compare-and-set commit with its
// events in the record's outbox (commit.go), so any broker replica may
// apply any of them and a change is applied, and its events published,
// once. A final record never changes again: a completion that arrives
// twice, or after the action was cancelled or timed out, is answered and
// ignored.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// actionRow is an action record as the broker stores it: the record, and
// what the broker keeps to throttle its progress events. The extra fields
// start with "_" so no reader of the record's schema type sees them.
type actionRow struct {
	schemas.ActionRecord
	// EventSeq is the progress report last published as an event, EventAt
	// when it was.
	EventSeq uint64    `json:"_progress_event_seq,omitempty"`
	EventAt  time.Time `json:"_progress_event_at"`
}

// progressDue reports whether the row's last progress report is not
// published yet.
func (r *actionRow) progressDue() bool { return r.Progress != nil && r.Progress.Seq > r.EventSeq }

// errNoChange, returned by an action change, leaves the record as it is.
var errNoChange = errors.New("no change")

// errActionExists refuses to create an action that is already recorded.
var errActionExists = errors.New("action exists")

func actionNotFound(id string) error {
	e := schemas.Errorf(schemas.CodeNotFound, "id", "action %q does not exist (a finished action is kept for the broker's action retention, then it leaves)", id)
	e.Details = map[string]any{schemas.DetailKind: "action", schemas.DetailName: id}
	return e
}

// actionEnded is the conflict of an operation that needs an action that has
// not ended.
func actionEnded(row actionRow, what string) error {
	at := row.UpdatedAt
	if row.FinishedAt != nil {
		at = *row.FinishedAt
	}
	e := schemas.Errorf(schemas.CodeConflict, "id", "action %s already %s at %s: only a pending or running action can be %s",
		row.ID, row.Status, at.UTC().Format(time.RFC3339), what)
	e.Details = map[string]any{schemas.DetailKind: "action", schemas.DetailName: row.ID, schemas.DetailStatus: row.Status}
	return e
}

func (b *Broker) readAction(ctx context.Context, id string) (actionRow, error) {
	var row actionRow
	if _, err := getJSON(ctx, b.st.actions, id, &row); err != nil {
		if isNotFound(err) || errors.Is(err, jetstream.ErrInvalidKey) {
			return row, actionNotFound(id)
		}
		return row, err
	}
	return row, nil
}

// changeAction commits fn on the action id: fn returns the events to
// publish, errNoChange to leave the record as it is, or an error. It
// returns the record after the change (as it is, for errNoChange) and
// whether fn changed it.
//
// On a replicated bucket a read may be answered by a replica that has not
// applied the latest write yet (KV reads are JetStream direct gets, which
// every replica serves): the record this broker or another one has just
// written can look missing. So a missing record is read again a few times
// over staleReadWindow before the answer is not_found.
func (b *Broker) changeAction(ctx context.Context, id, op string, fn func(row *actionRow) ([]*event.Event, error)) (actionRow, bool, error) {
	delay := 10 * time.Millisecond
	deadline := time.Now().Add(staleReadWindow)
	for {
		row, changed, err := b.changeActionOnce(ctx, id, op, fn)
		if !errors.Is(err, errActionMissing) {
			return row, changed, err
		}
		if b.cfg.Replicas <= 1 || time.Now().Add(delay).After(deadline) {
			return row, changed, actionNotFound(id)
		}
		select {
		case <-ctx.Done():
			return row, changed, actionNotFound(id)
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// staleReadWindow bounds how long a missing action record is read again
// on a replicated bucket before it counts as missing.
const staleReadWindow = time.Second

// errActionMissing is changeActionOnce's error for a record it did not
// find.
var errActionMissing = errors.New("action record not found")

func (b *Broker) changeActionOnce(ctx context.Context, id, op string, fn func(row *actionRow) ([]*event.Event, error)) (actionRow, bool, error) {
	var seen actionRow
	res, err := commitRecord(ctx, b, b.st.actions, id, op, func(cur *actionRow, exists bool) ([]*event.Event, time.Duration, error) {
		if !exists {
			return nil, 0, errActionMissing
		}
		seen = *cur
		evs, err := fn(cur)
		if err != nil {
			return nil, 0, err
		}
		var ttl time.Duration
		if schemas.ActionFinal(cur.Status) {
			ttl = b.cfg.ActionRetention
		}
		return evs, ttl, nil
	})
	switch {
	case errors.Is(err, errNoChange):
		return seen, false, nil
	case err != nil:
		return actionRow{}, false, err
	case res.Replayed:
		return res.Record, false, nil
	}
	return res.Record, true, nil
}

func (b *Broker) progressEvent(row *actionRow, now time.Time) (*event.Event, error) {
	p := row.Progress
	row.EventSeq, row.EventAt = p.Seq, now
	return NewEvent(schemas.TypeMachineActionProgress, schemas.MachineActionProgressData{
		ActionID: row.ID, Machine: row.Object, Command: row.Command, Plugin: row.Plugin,
		Percent: p.Percent, Message: p.Message, Seq: p.Seq, At: p.At,
	}, WithSubject("machine/"+row.Object))
}

// createAction records a new action and publishes its action_requested
// event. created is false when the action was recorded already (a retry
// of the same operation): row is then the stored one.
func (b *Broker) createAction(ctx context.Context, rec schemas.ActionRecord, op string) (actionRow, bool, error) {
	res, err := commitRecord(ctx, b, b.st.actions, rec.ID, "start/"+op, func(cur *actionRow, exists bool) ([]*event.Event, time.Duration, error) {
		if exists {
			return nil, 0, errActionExists
		}
		*cur = actionRow{ActionRecord: rec}
		ev, err := NewEvent(schemas.TypeMachineActionRequested, schemas.MachineActionRequestedData{
			ActionID: rec.ID, Machine: rec.Object, Command: rec.Command, Plugin: rec.Plugin, Params: rec.Params,
		}, WithSubject("machine/"+rec.Object))
		return []*event.Event{ev}, 0, err
	})
	if errors.Is(err, errActionExists) || err == nil && res.Replayed {
		row, err := b.readAction(ctx, rec.ID)
		return row, false, err
	}
	if err != nil {
		return actionRow{}, false, err
	}
	return res.Record, true, nil
}

// finishAction ends an action (succeeded, failed or cancelled) unless it
// has ended already, publishing its last unpublished progress report and
// its action_completed event. recorded is false when it had ended: row is
// then the record as it ended.
func (b *Broker) finishAction(ctx context.Context, id, op, status string, result json.RawMessage, cause *schemas.Error) (row actionRow, recorded bool, err error) {
	row, recorded, err = b.changeAction(ctx, id, op+"/"+id, func(cur *actionRow) ([]*event.Event, error) {
		if schemas.ActionFinal(cur.Status) {
			return nil, errNoChange
		}
		now := time.Now().UTC()
		var evs []*event.Event
		if cur.progressDue() {
			ev, err := b.progressEvent(cur, now)
			if err != nil {
				return nil, err
			}
			evs = append(evs, ev)
		}
		cur.Status, cur.Result, cur.Error = status, nil, cause
		if status == schemas.ActionSucceeded {
			cur.Result = result
		}
		cur.UpdatedAt, cur.FinishedAt = now, &now
		cur.DurationMs = ms(now.Sub(cur.CreatedAt))
		ev, err := NewEvent(schemas.TypeMachineActionCompleted, schemas.MachineActionCompletedData{
			ActionID: cur.ID, Machine: cur.Object, Command: cur.Command, Plugin: cur.Plugin,
			Status: status, Result: cur.Result, Error: cause, DurationMs: cur.DurationMs,
		}, WithSubject("machine/"+cur.Object))
		if err != nil {
			return nil, err
		}
		return append(evs, ev), nil
	})
	if err == nil && recorded {
		outcome := "ok"
		if cause != nil {
			outcome = cause.Code
		}
		b.log.Info().Str(logging.FieldActionID, id).Str(logging.FieldMachine, row.Object).Str(logging.FieldCommand, row.Command).
			Str(logging.FieldPlugin, row.Plugin).Str(logging.FieldOutcome, outcome).Float64(logging.FieldDuration, row.DurationMs).Msg("action")
	}
	return row, recorded, err
}

// markRunning records that the plugin took a pending action.
func (b *Broker) markRunning(ctx context.Context, id, instance string) error {
	_, _, err := b.changeAction(ctx, id, "accepted/"+id, func(cur *actionRow) ([]*event.Event, error) {
		if cur.Status != schemas.ActionPending {
			return nil, errNoChange
		}
		now := time.Now().UTC()
		cur.Status, cur.StartedAt, cur.Instance, cur.UpdatedAt = schemas.ActionRunning, &now, instance, now
		return nil, nil
	})
	return err
}

// recordProgress applies a plugin's progress report.
func (b *Broker) recordProgress(ctx context.Context, plugin string, req *schemas.ActionProgressRequest) (schemas.ActionReportResponse, error) {
	row, recorded, err := b.changeAction(ctx, req.ActionID, fmt.Sprintf("progress/%s/%d", req.ActionID, req.Seq), func(cur *actionRow) ([]*event.Event, error) {
		if cur.Plugin != plugin {
			return nil, notYourAction(req.ActionID, plugin)
		}
		if schemas.ActionFinal(cur.Status) || cur.Progress != nil && req.Seq <= cur.Progress.Seq {
			return nil, errNoChange
		}
		now := time.Now().UTC()
		cur.Progress = &schemas.ActionProgress{Percent: req.Percent, Message: req.Message, Seq: req.Seq, At: now}
		if cur.Status == schemas.ActionPending {
			cur.Status, cur.StartedAt = schemas.ActionRunning, &now
		}
		if req.Instance != "" {
			cur.Instance = req.Instance
		}
		cur.UpdatedAt = now
		if now.Sub(cur.EventAt) < b.cfg.ActionProgressInterval {
			return nil, nil // the keeper publishes it once the interval is over
		}
		ev, err := b.progressEvent(cur, now)
		if err != nil {
			return nil, err
		}
		return []*event.Event{ev}, nil
	})
	if err != nil {
		return schemas.ActionReportResponse{}, err
	}
	return schemas.ActionReportResponse{Status: row.Status, Recorded: recorded, Error: row.Error}, nil
}

func notYourAction(id, plugin string) error {
	e := schemas.Errorf(schemas.CodeForbidden, "action_id", "action %s was not routed to plugin %s: a plugin reports on its own actions only", id, plugin)
	e.Details = map[string]any{schemas.DetailKind: "action", schemas.DetailName: id}
	return e
}

// completeAction applies a plugin's completion report.
func (b *Broker) completeAction(ctx context.Context, plugin string, req *schemas.ActionCompleteRequest) (schemas.ActionReportResponse, error) {
	row, err := b.readAction(ctx, req.ActionID)
	if err != nil {
		return schemas.ActionReportResponse{}, err
	}
	if row.Plugin != plugin {
		return schemas.ActionReportResponse{}, notYourAction(req.ActionID, plugin)
	}
	status, cause := schemas.ActionSucceeded, req.Error
	if cause != nil {
		status = schemas.ActionFailed
		c := *cause
		c.Plugin = plugin
		cause = &c
	}
	result := req.Result
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	row, recorded, err := b.finishAction(ctx, req.ActionID, "complete", status, result, cause)
	if err != nil {
		return schemas.ActionReportResponse{}, err
	}
	return schemas.ActionReportResponse{Status: row.Status, Recorded: recorded, Error: row.Error}, nil
}

// cancelNoticeWait bounds the wait for the instance running a cancelled
// action to answer the notice.
const cancelNoticeWait = 2 * time.Second

// notifyEnded tells the plugin's instances that an action ended without
// them (cancelled, timed out); it reports whether the instance running it
// answered.
func (b *Broker) notifyEnded(ctx context.Context, row actionRow) bool {
	ctx, cancel := context.WithTimeout(ctx, cancelNoticeWait)
	defer cancel()
	var resp schemas.ActionCancelNoticeResponse
	err := wire.Call(ctx, b.nc, wire.PluginSubject(b.cfg.Prefix, row.Plugin, schemas.VerbCancel),
		schemas.ActionCancelNotice{ActionID: row.ID, Error: row.Error}, &resp)
	if err != nil {
		b.log.Info().Err(err).Str(logging.FieldActionID, row.ID).Str(logging.FieldPlugin, row.Plugin).
			Msg("no instance answered the notice that the action ended; it learns on its next report")
		return false
	}
	return true
}

// cancelAction cancels an action that has not ended and tells its plugin.
func (b *Broker) cancelAction(ctx context.Context, req *schemas.ActionCancelRequest) (schemas.ActionCancelResponse, error) {
	row, err := b.readAction(ctx, req.ID)
	if err != nil {
		return schemas.ActionCancelResponse{}, err
	}
	if schemas.ActionFinal(row.Status) {
		return schemas.ActionCancelResponse{}, actionEnded(row, "cancelled")
	}
	msg := "cancelled by an operator"
	if req.Reason != "" {
		msg += ": " + req.Reason
	}
	cause := &schemas.Error{Code: schemas.CodeCancelled, Message: msg, Details: map[string]any{schemas.DetailActionID: req.ID}}
	row, recorded, err := b.finishAction(ctx, req.ID, "cancel", schemas.ActionCancelled, nil, cause)
	if err != nil {
		return schemas.ActionCancelResponse{}, err
	}
	if !recorded {
		return schemas.ActionCancelResponse{}, actionEnded(row, "cancelled")
	}
	return schemas.ActionCancelResponse{Action: row.ActionRecord, Notified: b.notifyEnded(ctx, row)}, nil
}

// waitAction waits until the action's record satisfies done, or ctx ends
// (then it returns the last record seen and ctx's error).
func (b *Broker) waitAction(ctx context.Context, id string, done func(actionRow) bool) (actionRow, error) {
	var last actionRow
	w, err := b.st.actions.Watch(ctx, id)
	if err != nil {
		return last, err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return last, ctx.Err()
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var row actionRow
			if json.Unmarshal(e.Value(), &row) != nil {
				continue
			}
			last = row
			if done(row) {
				return row, nil
			}
		}
	}
}

// dispatchAction calls the plugin with a pending action: it answers with
// the result (a short action), with an error, or accepts the action and
// reports its completion later. It runs beyond the API request that
// started the action (parent), bounded by the action's deadline, in the
// request's trace.
func (b *Broker) dispatchAction(parent context.Context, row actionRow) {
	// The call outlives the request and its object lock (buslock.go): its
	// writes are the action record's, not under the machine's lock.
	parent = context.WithValue(context.WithoutCancel(parent), lockKey{}, (*objectLock)(nil))
	ctx, cancel := context.WithDeadline(parent, row.Deadline)
	defer cancel()
	deadline := row.Deadline
	req := schemas.ActionRequest{ActionID: row.ID, Command: row.Command, Model: row.Model, Object: row.Object, Params: row.Params,
		Async: true, Timeout: row.Timeout, Deadline: &deadline}
	start := time.Now()
	var resp schemas.ActionResponse
	err := b.callLimited(ctx, row.Plugin, func(ctx context.Context) error {
		return wire.Call(ctx, b.nc, wire.PluginSubject(b.cfg.Prefix, row.Plugin, schemas.VerbAction), req, &resp)
	})
	code := "ok"
	if err != nil {
		code = schemas.AsError(err).Code
	}
	b.metrics.pluginCalls.WithLabelValues(schemas.VerbAction, metricCode(code)).Observe(time.Since(start).Seconds())
	// Recording the outcome must not depend on the call's deadline.
	rctx, rcancel := context.WithTimeout(parent, publishBound)
	defer rcancel()
	switch {
	case err == nil && resp.Accepted:
		err = b.markRunning(rctx, row.ID, resp.Instance)
	case err == nil:
		result := resp.Result
		if len(result) == 0 {
			result = json.RawMessage("null")
		}
		_, _, err = b.finishAction(rctx, row.ID, "reply", schemas.ActionSucceeded, result, nil)
	case b.nc.IsClosed() || b.nc.IsDraining() || errors.Is(err, nats.ErrConnectionClosed):
		// The broker is stopping: the plugin may still run the action
		// and report it to the next broker; the deadline ends it if not.
		b.log.Info().Str(logging.FieldActionID, row.ID).Msg("broker stopping while calling the plugin; the action's record stays as it is")
		return
	default:
		e := schemas.AsError(err)
		e.Plugin = row.Plugin
		switch {
		case e.Code == schemas.CodeNoResponders:
			e.Message = fmt.Sprintf("plugin %s has no running instance to run %s: start it and retry", row.Plugin, row.Command)
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			e = timeoutError(row)
		}
		_, recorded, ferr := b.finishAction(rctx, row.ID, "reply", schemas.ActionFailed, nil, e)
		if err = ferr; err == nil && recorded && e.Code == schemas.CodeTimeout {
			b.notifyEnded(rctx, row)
		}
	}
	if err != nil {
		b.log.Error().Err(err).Str(logging.FieldActionID, row.ID).Msg("cannot record the plugin's answer to the action; its deadline ends it")
	}
}

// timeoutError is the error of an action that ran past its timeout.
func timeoutError(row actionRow) *schemas.Error {
	e := schemas.Errorf(schemas.CodeTimeout, "", "action %s ran past its timeout of %s", row.Command, row.Timeout.D())
	e.Plugin = row.Plugin
	e.Details = map[string]any{schemas.DetailActionID: row.ID}
	return e
}

// actionKeeper ends the actions that run past their deadline and
// publishes the progress reports held back by the progress interval. Every
// broker runs one; they watch the actions bucket, so whichever is up does
// it, and the compare-and-set makes each change once.
type actionKeeper struct {
	b  *Broker
	mu sync.Mutex
	// active are the actions that have not ended, by id.
	active map[string]actionRow
}

// keepActions runs the keeper until ctx ends.
func (b *Broker) keepActions(ctx context.Context) {
	k := &actionKeeper{b: b, active: map[string]actionRow{}}
	var wg sync.WaitGroup
	wg.Go(func() { k.watch(ctx) })
	t := time.NewTicker(keeperTick(b.cfg.ActionProgressInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			k.tick(ctx)
		}
	}
}

// keeperTick is how often the keeper looks at the active actions: often
// enough for the progress interval, at most every 250ms.
func keeperTick(interval time.Duration) time.Duration {
	return min(max(interval/2, 10*time.Millisecond), 250*time.Millisecond)
}

func (k *actionKeeper) watch(ctx context.Context) {
	watchBucket(ctx, k.b.st.actions, func(e jetstream.KeyValueEntry) {
		var row actionRow
		live := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &row) == nil && !schemas.ActionFinal(row.Status)
		k.mu.Lock()
		if live {
			k.active[e.Key()] = row
		} else {
			delete(k.active, e.Key())
		}
		k.mu.Unlock()
	})
}

func (k *actionKeeper) tick(ctx context.Context) {
	now := time.Now()
	var expired, progress []actionRow
	k.mu.Lock()
	for _, row := range k.active {
		switch {
		case !now.Before(row.Deadline):
			expired = append(expired, row)
		case row.progressDue() && now.Sub(row.EventAt) >= k.b.cfg.ActionProgressInterval:
			progress = append(progress, row)
		}
	}
	k.mu.Unlock()
	for _, row := range expired {
		cctx, cancel := context.WithTimeout(ctx, publishBound)
		ended, recorded, err := k.b.finishAction(cctx, row.ID, "timeout", schemas.ActionFailed, nil, timeoutError(row))
		if err == nil && recorded {
			k.b.notifyEnded(cctx, ended)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			k.b.log.Warn().Err(err).Str(logging.FieldActionID, row.ID).Msg("cannot end an action past its deadline yet; retrying")
		}
	}
	for _, row := range progress {
		cctx, cancel := context.WithTimeout(ctx, publishBound)
		_, _, err := k.b.changeAction(cctx, row.ID, fmt.Sprintf("progress-event/%s/%d", row.ID, row.Progress.Seq), func(cur *actionRow) ([]*event.Event, error) {
			now := time.Now().UTC()
			if schemas.ActionFinal(cur.Status) || !cur.progressDue() || now.Sub(cur.EventAt) < k.b.cfg.ActionProgressInterval {
				return nil, errNoChange
			}
			ev, err := k.b.progressEvent(cur, now)
			if err != nil {
				return nil, err
			}
			return []*event.Event{ev}, nil
		})
		cancel()
		if err != nil && ctx.Err() == nil {
			k.b.log.Warn().Err(err).Str(logging.FieldActionID, row.ID).Msg("cannot publish an action's progress yet; retrying")
		}
	}
}
