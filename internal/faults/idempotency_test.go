package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// liveRequests is how many replies the broker keeps for its idempotency
// window (live keys of the requests bucket).
func liveRequests(t *testing.T, kv jetstream.KeyValue) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("list %s: %v", kv.Bucket(), err)
	}
	return len(keys)
}

// Scenario 6: the same idempotency key inside and outside the broker's
// idempotency window (2s here). Inside, a repeat gets the first reply and
// stores nothing. Outside — once the requests bucket no longer holds the
// key, a condition the test waits for — the alert record still carries the
// operation's id, so a repeat on the same alert is recognised while no
// other operation changed it since. After another operation it is done
// again, record and event: the row counts that duplicate, and the last
// event must say what the record holds.
func TestIdempotencyWindow(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t, "--idempotency-window", "2s")
	c := b.admin(t)
	js := b.jetstream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	requests, err := js.KeyValue(ctx, schemas.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}
	replayed := func() float64 {
		return counter(b.metrics(t), "plugbus_api_requests_total", map[string]string{"endpoint": schemas.APIAlertsFire, "code": "replayed"})
	}
	var sent, acked int
	replyIDs := map[string]bool{}
	fire := func(key, id string) *schemas.AlertResponse {
		t.Helper()
		sent++
		resp, err := c.FireAlert(client.WithIdempotencyKey(ctx, key), schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityWarning, Summary: "disk " + key})
		if err != nil {
			t.Fatalf("fire %s with key %s: %v", id, key, err)
		}
		acked++
		replyIDs[resp.EventID] = true
		return resp
	}
	same := func(what string, a, b *schemas.AlertResponse) {
		t.Helper()
		if a.EventID != b.EventID || a.Alert.ID != b.Alert.ID || !a.Alert.FiredAt.Equal(b.Alert.FiredAt) || a.Alert.Summary != b.Alert.Summary {
			t.Errorf("%s: another reply than the first:\n first %+v\n again %+v", what, a, b)
		}
	}
	expire := func() {
		t.Helper()
		waitFor(t, "the requests bucket to let the kept replies expire", waitLimit, func() bool { return liveRequests(t, requests) == 0 })
	}
	fired := func(id string) int {
		n := 0
		for _, msgs := range storedAlerts(t, js, schemas.TypeAlertFired)[id] {
			n += msgs
		}
		return n
	}

	// Inside the window: the kept reply.
	r1 := fire("k1", "idem-a")
	rep0 := replayed()
	r2 := fire("k1", "idem-a")
	same("inside the window", r1, r2)
	insideReplayed := replayed() - rep0
	if insideReplayed != 1 || fired("idem-a") != 1 {
		t.Errorf("inside the window: %v replies from the window, %d fired events; want 1 and 1", insideReplayed, fired("idem-a"))
	}
	// Outside: the record recognises the operation.
	expire()
	r3 := fire("k1", "idem-a")
	same("outside the window, nothing done since", r1, r3)
	if n := fired("idem-a"); n != 1 {
		t.Errorf("outside the window, the repeat stored another event: %d fired", n)
	}
	// Another operation on the alert, then the first key again outside
	// the window: the record carries the other operation now, so it is
	// done again.
	r4 := fire("k2", "idem-a")
	if r4.EventID == r1.EventID {
		t.Errorf("another key was taken for the first operation")
	}
	expire()
	r5 := fire("k1", "idem-a")
	againAfterOther := fired("idem-a")
	// Done again: the record took the operation a second time (a new
	// fired_at); its event must be a new one too (before the fix it kept
	// the first k1 event's id, and the stream, which drops a repeated id
	// for its 2-minute duplicate window, dropped it).
	reapplied := r5.Alert.FiredAt.After(r4.Alert.FiredAt)
	sameEventID := r5.EventID == r1.EventID
	// What consumers were told must be what the record holds: the last
	// fired event of idem-a carries the record's data.
	alerts, err := js.KeyValue(ctx, schemas.BucketAlerts)
	if err != nil {
		t.Fatal(err)
	}
	var rec, last schemas.Alert
	if e, err := alerts.Get(ctx, "idem-a"); err != nil || json.Unmarshal(e.Value(), &rec) != nil {
		t.Fatalf("read the record of idem-a: %v", err)
	}
	var lastSeq uint64
	for _, m := range readStream(t, js, schemas.StreamEvents, wire.EventSubject(wire.DefaultPrefix, schemas.TypeAlertFired)) {
		if m.Header.Get("ce-subject") == "alert/idem-a" && m.Seq > lastSeq {
			lastSeq = m.Seq
			_ = json.Unmarshal(m.Data, &last)
		}
	}
	diverged := rec.Summary != last.Summary || !rec.FiredAt.Equal(last.FiredAt)
	if diverged {
		t.Errorf("the record of idem-a and its last fired event disagree after k1 was repeated outside the window, after k2: "+
			"record summary %q fired_at %s, last event summary %q fired_at %s: consumers never heard of the change", rec.Summary, rec.FiredAt, last.Summary, last.FiredAt)
	}
	// Without an id, the alert's id comes from the key: recognised too.
	r6 := fire("k3", "")
	expire()
	r7 := fire("k3", "")
	same("no id, outside the window", r6, r7)

	events := storedAlerts(t, js, schemas.TypeAlertFired)
	stored, lost, unexpected := 0, 0, 0
	for _, id := range []string{"idem-a", r6.Alert.ID} {
		for eid, msgs := range events[id] {
			stored += msgs
			if !replyIDs[eid] {
				unexpected++
			}
		}
	}
	for eid := range replyIDs {
		found := false
		for _, evs := range events {
			found = found || evs[eid] > 0
		}
		if !found {
			lost++
		}
	}
	if diverged {
		lost++ // an acknowledged change no consumer can see
	}
	const operations = 3 // k1 and k2 on idem-a, k3
	dups := stored - operations
	record(t, Row{Scenario: "idempotency-window", Offered: num(sent), Acknowledged: num(acked), Stored: num(stored), Lost: num(lost),
		Duplicated: num(dups), Unexpected: num(unexpected),
		Notes: fmt.Sprintf("window 2s; inside: the first reply (%v from the window), no new event; outside, nothing done since: recognised by the record's operation id, the first reply's event, no new event (also for an alert without id); "+
			"outside, after key k2 changed the alert: k1 done again (new fired_at %v, new event id %v), %d fired events for idem-a, the extra one counted as duplicated; record and last event agree: %v",
			insideReplayed, reapplied, !sameEventID, againAfterOther, !diverged),
		Seconds: time.Since(start).Seconds()})
	if lost != 0 || unexpected != 0 {
		t.Errorf("lost %d, unexpected %d", lost, unexpected)
	}
	if dups != 1 || !reapplied {
		t.Errorf("%d duplicates (re-applied: %v), want the one of k1 repeated after k2", dups, reapplied)
	}
}
