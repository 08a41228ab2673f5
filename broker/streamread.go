package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
)

// readInactive is how long a reader's consumer outlives the reader's
// interest in its inbox.
const readInactive = 10 * time.Second

// readHeartbeat is how often an idle reader's consumer says it is alive
// (flow control needs heartbeats).
const readHeartbeat = 5 * time.Second

// handleStreamsRead serves streams.read: it finds the window of the last
// N matching messages (streamwindow.go) and creates an ephemeral push
// consumer that delivers it, then with follow every new message, to the
// admin's inbox. Admins read the streams this way because a consumer
// permission cannot tell a reader's consumer from a plugin's durable one
// (docs/security.md).
func (b *Broker) handleStreamsRead(ctx context.Context, req *schemas.StreamReadRequest) (any, error) {
	s, err := b.js.Stream(ctx, req.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		e := schemas.Errorf(schemas.CodeNotFound, "stream", "stream %s does not exist: the broker creates it when it starts; restart the broker", req.Stream)
		e.Details = map[string]any{schemas.DetailKind: "stream", schemas.DetailName: req.Stream}
		return nil, e
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", req.Stream, err)
	}
	if err := checkFilters(s.CachedInfo().Config.Subjects, req.Filters); err != nil {
		return nil, err
	}
	var since time.Time
	if req.Since != nil {
		since = *req.Since
	}
	var win window
	if req.FromSeq > 0 {
		if req.Since != nil {
			return nil, schemas.Errorf(schemas.CodeInvalidField, "from_seq", "from_seq and since both say where to start: give one")
		}
		if win, err = firstNFrom(ctx, s, req.Filters, req.Last, req.FromSeq); err != nil {
			return nil, fmt.Errorf("find the messages of %s from sequence %d: %w", req.Stream, req.FromSeq, err)
		}
	} else if win, err = lastNSince(ctx, s, req.Filters, req.Last, since); err != nil {
		return nil, fmt.Errorf("find the last %d messages of %s: %w", req.Last, req.Stream, err)
	}
	resp := &schemas.StreamReadResponse{Want: win.Want, StartSeq: win.Start}
	if !win.StartTime.IsZero() {
		resp.StartSeq = 0
	}
	if win.Want == 0 && !req.Follow {
		return resp, nil
	}
	cc := jetstream.ConsumerConfig{
		Name:              schemas.ReadConsumerPrefix + nuid.Next(),
		Description:       "streams.read for an admin",
		DeliverSubject:    req.Deliver,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       win.Start,
		AckPolicy:         jetstream.AckNonePolicy,
		FlowControl:       true,
		IdleHeartbeat:     readHeartbeat,
		InactiveThreshold: readInactive,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if !win.StartTime.IsZero() {
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, 0, &win.StartTime
	}
	setFilters(&cc.FilterSubject, &cc.FilterSubjects, req.Filters)
	if _, err := b.js.CreatePushConsumer(ctx, req.Stream, cc); err != nil {
		return nil, fmt.Errorf("create the reader's consumer on %s: %w", req.Stream, err)
	}
	resp.Consumer = cc.Name
	resp.InactiveSeconds = int(readInactive / time.Second)
	return resp, nil
}

// handleStreamsStop serves streams.stop: it deletes a reader's consumer,
// and no other.
func (b *Broker) handleStreamsStop(ctx context.Context, req *schemas.StreamStopRequest) (any, error) {
	if !strings.HasPrefix(req.Consumer, schemas.ReadConsumerPrefix) {
		return nil, schemas.Errorf(schemas.CodeForbidden, "consumer", "%s is not a reader's consumer: streams.stop deletes only those streams.read made", req.Consumer)
	}
	err := b.js.DeleteConsumer(ctx, req.Stream, req.Consumer)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return schemas.StreamStopResponse{}, nil
	case err != nil:
		return nil, fmt.Errorf("delete %s on %s: %w", req.Consumer, req.Stream, err)
	}
	return schemas.StreamStopResponse{Stopped: true}, nil
}

// checkFilters makes sure every filter is within the stream's subjects, so
// the error names the filter rather than a JetStream code.
func checkFilters(subjects, filters []string) error {
	for i, f := range filters {
		if !slices.ContainsFunc(subjects, func(s string) bool { return subjectWithin(f, s) }) {
			return schemas.Errorf(schemas.CodeInvalidField, fmt.Sprintf("filters[%d]", i),
				"filter %q matches nothing this stream holds (its subjects: %s)", f, strings.Join(subjects, ", "))
		}
	}
	return nil
}

// subjectWithin reports whether every subject filter f matches is matched
// by pattern p.
func subjectWithin(f, p string) bool {
	ft, pt := strings.Split(f, "."), strings.Split(p, ".")
	for i, tok := range pt {
		if tok == ">" {
			return i < len(ft)
		}
		if i >= len(ft) {
			return false
		}
		switch {
		case tok == "*":
			if ft[i] == ">" {
				return false
			}
		case ft[i] != tok:
			return false
		}
	}
	return len(ft) == len(pt)
}
