package broker

// Operators' endpoints besides the dead letters (handlers_dlq.go):
// verifying a plugin again, listing and reading alerts, reading one event.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

func (b *Broker) handlePluginVerify(ctx context.Context, req *schemas.PluginGetRequest) (any, error) {
	rec, err := b.reg.reverify(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return redacted(rec), nil
}

// reverify asks a plugin again whether it is ready: an ACTIVE plugin runs
// verify (and goes to ERROR when it says no, as after a config change); a
// plugin in any other state but STALE runs its whole lifecycle again
// (init → config → verify), so a plugin whose dependency came back is
// ACTIVE again without a restart. A plugin that ends up not ACTIVE fails
// the call with its last error.
func (r *registry) reverify(ctx context.Context, name string) (schemas.PluginRecord, error) {
	unlock := r.lock(name)
	defer unlock()
	rec, _, err := r.get(ctx, name)
	if err != nil {
		return rec, err
	}
	switch rec.State {
	case schemas.StateStale:
		e := schemas.Errorf(schemas.CodeNotActive, "name", "plugin %s has no running instance (STALE): nothing answers its verify; start it", name)
		e.Plugin = name
		return rec, e
	case schemas.StateActive:
		var vr schemas.VerifyResponse
		err := r.call(ctx, name, schemas.VerbVerify, schemas.VerifyRequest{}, &vr)
		if err == nil && vr.Ready {
			return rec, nil
		}
		if err == nil {
			msg := vr.Message
			if msg == "" {
				msg = "plugin reported it is not ready"
			}
			err = &schemas.Error{Code: schemas.CodePluginError, Plugin: name, Message: "verify failed: " + msg}
		}
		rec = r.transition(ctx, rec, schemas.StateError, err)
		return rec, rec.LastError
	default:
		rec = r.lifecycle(ctx, rec, nil)
		if rec.State != schemas.StateActive {
			return rec, rec.LastError
		}
		return rec, nil
	}
}

func (b *Broker) handleAlertsList(ctx context.Context, req *schemas.AlertListRequest) (any, error) {
	all, err := listJSON[schemas.Alert](ctx, b.st.alerts)
	if err != nil {
		return nil, err
	}
	out := schemas.AlertListResponse{Alerts: []schemas.Alert{}}
	for _, a := range all {
		if a.ID == "" || (req.Status != "" && a.Status != req.Status) {
			continue
		}
		out.Alerts = append(out.Alerts, a)
	}
	sort.Slice(out.Alerts, func(i, j int) bool {
		ai, aj := out.Alerts[i], out.Alerts[j]
		if !ai.FiredAt.Equal(aj.FiredAt) {
			return ai.FiredAt.Before(aj.FiredAt)
		}
		return ai.ID < aj.ID
	})
	return out, nil
}

func (b *Broker) handleAlertsGet(ctx context.Context, req *schemas.AlertRef) (any, error) {
	var a schemas.Alert
	if _, err := getJSON(ctx, b.st.alerts, req.ID, &a); err != nil {
		if isNotFound(err) {
			e := schemas.Errorf(schemas.CodeNotFound, "id", "alert %q does not exist (resolved alerts are kept for the alert retention)", req.ID)
			e.Details = map[string]any{schemas.DetailKind: "alert", schemas.DetailName: req.ID}
			return nil, e
		}
		return nil, err
	}
	return a, nil
}

func (b *Broker) handleEventsGet(ctx context.Context, req *schemas.EventGetRequest) (any, error) {
	seq := req.Seq
	if req.ID != "" {
		var err error
		if seq, err = findByHeader(ctx, b.st.events, "ce-id", req.ID); err != nil {
			return nil, err
		}
		if seq == 0 {
			e := schemas.Errorf(schemas.CodeNotFound, "id", "no event with id %q in %s (events older than the stream's max age are gone)", req.ID, schemas.StreamEvents)
			e.Details = map[string]any{schemas.DetailKind: "event", schemas.DetailName: req.ID}
			return nil, e
		}
	}
	m, err := b.st.events.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		e := schemas.Errorf(schemas.CodeNotFound, "seq", "%s holds no message at sequence %d", schemas.StreamEvents, seq)
		e.Details = map[string]any{schemas.DetailKind: "event", schemas.DetailName: fmt.Sprint(seq)}
		if info, ierr := b.st.events.Info(ctx); ierr == nil {
			e.Details["first_seq"], e.Details["last_seq"] = info.State.FirstSeq, info.State.LastSeq
		}
		return nil, e
	}
	if err != nil {
		return nil, fmt.Errorf("get message %d of %s: %w", seq, schemas.StreamEvents, err)
	}
	return storedMessage(schemas.StreamEvents, m), nil
}

// storedMessage is a stream message as the API shows it.
func storedMessage(stream string, m *jetstream.RawStreamMsg) schemas.StoredMessage {
	out := schemas.StoredMessage{Stream: stream, Seq: m.Sequence, Subject: m.Subject, Time: m.Time.UTC(), Data: m.Data}
	if len(m.Header) > 0 {
		out.Header = map[string][]string(m.Header)
	}
	return out
}

// findByHeader returns the sequence of the first message of s whose header
// key has value, or 0 when none has. It reads headers only, through an
// ephemeral consumer (memory storage, no acks) deleted when done.
func findByHeader(ctx context.Context, s jetstream.Stream, key, value string) (uint64, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return 0, fmt.Errorf("scan %s: %w", info.Config.Name, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = s.DeleteConsumer(dctx, c.CachedInfo().Name)
		cancel()
	}()
	last := info.State.LastSeq
	for {
		batch, err := c.Fetch(1024, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, fmt.Errorf("scan %s: %w", info.Config.Name, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if m.Headers().Get(key) == value {
				return md.Sequence.Stream, nil
			}
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return 0, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return 0, fmt.Errorf("scan %s: %w", info.Config.Name, err)
		}
		if n == 0 {
			return 0, nil // the rest was removed meanwhile
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}
