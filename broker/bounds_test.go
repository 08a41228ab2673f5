package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// The per-object locks are kept only while held: configuring or
// unregistering names that come and go leaves no ticket behind, in the
// bucket or in the broker's view of it, and the ticket keys are reused
// (the bucket does not grow with the number of objects).
func TestRegistryLocksArePruned(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			err := tb.call(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: fmt.Sprintf("ghost-%d", i), Set: map[string]any{"x": 1}}, nil)
			wantCode(t, err, schemas.CodeNotFound, "name")
		})
	}
	wg.Wait()
	l := tb.b.locks
	waitFor(t, "every ticket released", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, tk := range l.tickets {
			if tk.Object != schemas.LockLeader {
				return false
			}
		}
		return len(l.queues) == 1 // the leader's
	})
	l.slotsMu.Lock()
	slots := l.nextSlot
	l.slotsMu.Unlock()
	if slots > 31 {
		t.Errorf("%d ticket slots for 30 operations and the leadership", slots)
	}
	for i := range 30 {
		err := tb.call(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: fmt.Sprintf("ghost-again-%d", i), Set: map[string]any{"x": 1}}, nil)
		wantCode(t, err, schemas.CodeNotFound, "name")
	}
	l.slotsMu.Lock()
	again := l.nextSlot
	l.slotsMu.Unlock()
	if again != slots {
		t.Errorf("30 more operations one after another took %d new ticket slots, want the released ones reused", again-slots)
	}
	keys, err := tb.b.st.locks.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, k := range keys {
		if strings.HasPrefix(k, ticketKeyPrefix) {
			live++
		}
	}
	if live != 1 {
		t.Errorf("the locks bucket holds %d live tickets (%v), want the leader's only", live, keys)
	}
}

// The dead-letter stream is bounded by age and size, with documented
// defaults and settings.
func TestDLQIsBounded(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	info, err := tb.b.st.dlq.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != DefaultDLQMaxAge || info.Config.MaxBytes != DefaultDLQMaxBytes {
		t.Errorf("DLQ limits: max age %s, max bytes %d; want %s and %d", info.Config.MaxAge, info.Config.MaxBytes, DefaultDLQMaxAge, int64(DefaultDLQMaxBytes))
	}
	tb.stop()
	tb = startBroker(t, Config{NATSURL: s.ClientURL(), DLQMaxAge: 48 * 3600e9, DLQMaxBytes: 64 << 20})
	info, err = tb.b.st.dlq.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge.Hours() != 48 || info.Config.MaxBytes != 64<<20 {
		t.Errorf("DLQ limits after a restart with new settings: %s, %d", info.Config.MaxAge, info.Config.MaxBytes)
	}
	if err := (Config{DLQMaxBytes: 10}).Validate(); err == nil || !strings.Contains(err.Error(), "dlq-max-bytes") {
		t.Errorf("a tiny DLQ bound must be refused: %v", err)
	}
}

// A plugin may answer any error code; metrics count the ones outside the
// documented set as "other", so series stay bounded.
func TestUnknownCodesAreOther(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	p := newFakePlugin(t, s.ClientURL(), actionManifest("odd", schemas.ActionSpec{Command: "go", Model: "machines"}))
	p.actErr = &schemas.Error{Code: "weird_code_42", Message: "something odd"}
	p.start(wire.DefaultPrefix)
	p.register(t, tb, nil)
	for range 3 {
		err := tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "go"}, nil)
		wantCode(t, err, "weird_code_42", "") // the caller still sees the plugin's code
	}
	mfs, err := tb.b.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "weird_code_42" {
					t.Errorf("%s has a series labelled with the plugin's own code", mf.GetName())
				}
				if l.GetValue() == "other" {
					found[mf.GetName()] += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	if found["plugbus_api_requests_total"] != 3 || found["plugbus_plugin_call_duration_seconds"] != 3 {
		t.Errorf("series labelled other: %v; want 3 API requests and 3 plugin calls", found)
	}
}

// A ticket whose write JetStream stored but did not acknowledge in time
// (the write failed for the broker) would hold its object for as long as
// the broker's lease lives: the broker purges it in the background. Here
// the ticket is written by hand under the broker's own lease, as the
// unanswered write would have left it: while it stands, an operation on
// the object cannot take the lock; once dropOrphan purged it, it can.
func TestUnansweredTicketIsPurged(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	l := tb.b.locks
	leaseID, epoch, err := l.lease.wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const object = "machine/orphaned"
	key := ticketKey(leaseID, 10_000) // a slot the broker has not used
	body := fmt.Sprintf(`{"object":%q,"lease":%q,"broker":"test"}`, object, leaseID)
	if _, err := tb.b.st.locks.Create(context.Background(), key, []byte(body)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the orphan ticket in the broker's view", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.tickets[key] != nil
	})
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, ol, err := l.lock(short, object)
	cancel()
	if err == nil {
		ol.release()
		t.Fatalf("took the lock on %s while another ticket of a live lease held it", object)
	}
	l.dropOrphan(epoch, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, ol, err = l.lock(ctx, object)
	if err != nil {
		t.Fatalf("lock %s after the orphan ticket was purged: %v", object, err)
	}
	ol.release()
}
