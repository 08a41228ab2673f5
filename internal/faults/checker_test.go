package faults

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// The checker works as Jepsen's set checker does: the history records
// every operation the clients asked for and what they were told, the
// observation is what the bus holds at the end (events in the stream,
// POSTs the sink received), and the counts compare the two.

// op is one alerts.fire the suite asked for.
type op struct {
	ID, Key  string
	Attempts int
	Sent     time.Time // the first attempt
	// Answered: a definite answer came (OK, or a refusal with Code).
	Answered bool
	OK       bool
	Code     string
	EventID  string
	At       time.Time // when the answer came
	// Steps are the hook steps' outcomes of a successful answer
	// ("continued", "skipped", "ignored: timeout", …).
	Steps []string
	// Last is the last failed attempt's error (for failure reports).
	Last string
}

// history is what the clients did.
type history struct {
	mu      sync.Mutex
	ops     map[string]*op
	retries map[string]int // failed attempts retried, by error code
	offered atomic.Int64
	acked   atomic.Int64
}

func newHistory() *history { return &history{ops: map[string]*op{}, retries: map[string]int{}} }

// errCode is the plugbus error code of err, or "transport" for an error
// that is not a plugbus error (the connection went away, …).
func errCode(err error) string {
	var e *schemas.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "transport"
}

// retryable reports whether the client must ask again, with the same
// idempotency key, because it does not know what became of its request:
// no answer (timeout, nothing listening, the connection lost) or an answer
// that says to retry (unavailable, internal). A hook step's failure (the
// error names the plugin) is an answer: the operation was refused.
func retryable(err error) bool {
	var e *schemas.Error
	if !errors.As(err, &e) {
		return true
	}
	switch e.Code {
	case schemas.CodeTimeout, schemas.CodeNoResponders, schemas.CodeUnavailable, schemas.CodeInternal:
		return e.Plugin == ""
	}
	return false
}

// load is a set of alerts.fire requests sent by concurrent workers, each
// retried with its idempotency key until it is answered.
type load struct {
	c       *client.Client
	n       int
	workers int
	// prefix names the alerts: prefix-00042 with key prefix-key-00042.
	prefix string
	// timeout bounds one attempt.
	timeout time.Duration
	// req builds the i-th request (nil: a warning with the id set).
	req func(i int, id string) schemas.AlertFireRequest
	// offered, when set, is called as each request is first sent.
	offered func(n int)
	// once sends each request once: whatever comes back (a client-side
	// timeout too) is its answer.
	once bool
}

func (l load) id(i int) string  { return fmt.Sprintf("%s-%05d", l.prefix, i) }
func (l load) key(i int) string { return fmt.Sprintf("%s-key-%05d", l.prefix, i) }

// run sends the load and returns when every request is answered or ctx
// ends (then some stay unanswered, which the check reports).
func (h *history) run(ctx context.Context, l load) {
	if l.timeout == 0 {
		l.timeout = 5 * time.Second
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range l.workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < l.n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				h.fire(ctx, l, i)
			}
		})
	}
	wg.Wait()
}

// fire sends one request until it is answered.
func (h *history) fire(ctx context.Context, l load, i int) {
	o := &op{ID: l.id(i), Key: l.key(i), Sent: time.Now()}
	h.mu.Lock()
	h.ops[o.ID] = o
	h.mu.Unlock()
	n := int(h.offered.Add(1))
	if l.offered != nil {
		l.offered(n)
	}
	req := schemas.AlertFireRequest{ID: o.ID, Severity: schemas.SeverityWarning, Summary: "fault suite " + o.ID,
		Labels: map[string]string{"suite": "faults"}}
	if l.req != nil {
		req = l.req(i, o.ID)
	}
	kctx := client.WithIdempotencyKey(ctx, o.Key)
	for attempt := 1; ctx.Err() == nil; attempt++ {
		cctx, cancel := context.WithTimeout(kctx, l.timeout)
		resp, err := l.c.FireAlert(cctx, req)
		cancel()
		h.mu.Lock()
		o.Attempts = attempt
		if err == nil {
			o.Answered, o.OK, o.EventID, o.At = true, true, resp.EventID, time.Now()
			for _, c := range resp.Chains {
				for _, st := range c.Steps {
					out := st.Outcome
					if st.Error != nil {
						out += ": " + st.Error.Code
					}
					o.Steps = append(o.Steps, out)
				}
			}
			h.mu.Unlock()
			h.acked.Add(1)
			return
		}
		code := errCode(err)
		if l.once || !retryable(err) {
			o.Answered, o.Code, o.At = true, code, time.Now()
			h.mu.Unlock()
			return
		}
		h.retries[code]++
		o.Last = err.Error()
		h.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt)*50*time.Millisecond, time.Second)):
		}
	}
}

// snapshot copies the ops.
func (h *history) snapshot() map[string]op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]op, len(h.ops))
	for id, o := range h.ops {
		out[id] = *o
	}
	return out
}

// stepsNote counts the hook step outcomes of the successful answers.
func (h *history) stepsNote() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	counts := map[string]int{}
	for _, o := range h.ops {
		for _, s := range o.Steps {
			counts[s]++
		}
	}
	var parts []string
	for s, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// retriesNote says which failed attempts were retried.
func (h *history) retriesNote() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.retries) == 0 {
		return "no retries"
	}
	var parts []string
	for code, n := range h.retries {
		parts = append(parts, fmt.Sprintf("%d %s", n, code))
	}
	sort.Strings(parts)
	return "retried " + strings.Join(parts, ", ")
}

// storedAlerts reads the fired events of PLUGBUS_EVENTS: alert id → event
// id → how many messages carry it.
func storedAlerts(t *testing.T, js jetstream.JetStream, eventType string) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, m := range readStream(t, js, schemas.StreamEvents, wire.EventSubject(wire.DefaultPrefix, eventType)) {
		id := strings.TrimPrefix(m.Header.Get("ce-subject"), "alert/")
		if out[id] == nil {
			out[id] = map[string]int{}
		}
		out[id][m.Header.Get("ce-id")]++
	}
	return out
}

// Row is one line of the results table.
type Row struct {
	Scenario     string `json:"scenario"`
	Offered      *int   `json:"offered"`
	Acknowledged *int   `json:"acknowledged"`
	Stored       *int   `json:"stored"`
	Delivered    *int   `json:"delivered"`
	Lost         *int   `json:"lost"`
	Duplicated   *int   `json:"duplicated"`
	Unexpected   *int   `json:"unexpected"`
	// StallSeconds is the longest stretch of a load without an
	// acknowledgement (cluster scenarios).
	StallSeconds *float64 `json:"longest_stall_seconds,omitempty"`
	Notes        string   `json:"notes"`
	Seconds      float64  `json:"seconds"`
}

func num(n int) *int { return &n }

// verdict is what check found, with examples for a failure report.
type verdict struct {
	Row
	lostIDs, dupIDs, unexpectedIDs, unanswered []string
	storeDups, postDups                        int
}

// check compares the history with what the bus holds: events (alert id →
// event id → messages) and posts (alert id → POSTs; nil when the scenario
// has no webhook).
//
//   - offered: requests the clients sent (each its own alert id and key);
//   - acknowledged: requests answered with success;
//   - stored: offered alerts with a fired event in the stream;
//   - delivered: offered alerts POSTed to the webhook at least once;
//   - lost: acknowledged alerts with no stored event, or (with a webhook)
//     never POSTed;
//   - duplicated: alerts with more than one fired event (or message), or
//     POSTed more than once;
//   - unexpected: stored events or POSTs of alerts no request asked for, or
//     whose request was refused.
func check(h *history, events map[string]map[string]int, posts map[string]int) verdict {
	ops := h.snapshot()
	var v verdict
	acked, stored, delivered := 0, 0, 0
	for id, o := range ops {
		if !o.Answered {
			v.unanswered = append(v.unanswered, id)
		}
		evs := events[id]
		msgs := 0
		for _, n := range evs {
			msgs += n
		}
		if msgs > 0 {
			stored++
		}
		if posts != nil && posts[id] > 0 {
			delivered++
		}
		if o.OK {
			acked++
			if msgs == 0 || (posts != nil && posts[id] == 0) {
				v.lostIDs = append(v.lostIDs, id)
			}
		} else if msgs > 0 || (posts != nil && posts[id] > 0) {
			v.unexpectedIDs = append(v.unexpectedIDs, id)
		}
		dup := false
		if len(evs) > 1 || msgs > 1 {
			v.storeDups++
			dup = true
		}
		if posts != nil && posts[id] > 1 {
			v.postDups++
			dup = true
		}
		if dup {
			v.dupIDs = append(v.dupIDs, id)
		}
	}
	for id := range events {
		if _, ok := ops[id]; !ok {
			v.unexpectedIDs = append(v.unexpectedIDs, id)
		}
	}
	for id := range posts {
		if _, ok := ops[id]; !ok && events[id] == nil {
			v.unexpectedIDs = append(v.unexpectedIDs, id)
		}
	}
	for _, s := range [][]string{v.lostIDs, v.dupIDs, v.unexpectedIDs, v.unanswered} {
		sort.Strings(s)
	}
	v.Offered, v.Acknowledged, v.Stored = num(len(ops)), num(acked), num(stored)
	if posts != nil {
		v.Delivered = num(delivered)
	}
	v.Lost, v.Duplicated, v.Unexpected = num(len(v.lostIDs)), num(len(v.dupIDs)), num(len(v.unexpectedIDs))
	return v
}

// require fails the test unless nothing was lost or unexpected and every
// request was answered.
func (v verdict) require(t *testing.T) {
	t.Helper()
	first := func(s []string) []string { return s[:min(len(s), 10)] }
	if len(v.unanswered) > 0 {
		t.Errorf("%d requests never answered, e.g. %v", len(v.unanswered), first(v.unanswered))
	}
	if len(v.lostIDs) > 0 {
		t.Errorf("LOST %d acknowledged alerts, e.g. %v", len(v.lostIDs), first(v.lostIDs))
	}
	if len(v.unexpectedIDs) > 0 {
		t.Errorf("UNEXPECTED %d alerts stored or POSTed that no successful request asked for, e.g. %v", len(v.unexpectedIDs), first(v.unexpectedIDs))
	}
}

// dupNote says where the duplicates were.
func (v verdict) dupNote() string {
	return fmt.Sprintf("%d stored twice, %d POSTed more than once", v.storeDups, v.postDups)
}
