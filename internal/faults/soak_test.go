package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// plateau is the soak's check on the broker's RSS samples (taken at 10%,
// 20%, … 100% of the load): the growth over the last half (samples 5 to
// 10) must stay below half the growth over the first half (1 to 5), or
// below 5% of the RSS at the midpoint when the first half hardly grew —
// a line would grow as much in each half.
func plateau(s []int) (ok bool, first, last int) {
	mid := len(s)/2 - 1
	first, last = s[mid]-s[0], s[len(s)-1]-s[mid]
	return last <= first/2 || last <= s[mid]/20, first, last
}

// Scenario 10: a soak of 300,000 events — alerts fired and resolved, each
// call with its own idempotency key, with a 1s alert retention (resolved
// alerts leave the bucket) and a 5s idempotency window — while the
// broker's RSS is sampled at 10 points: it must reach a plateau, not grow
// as a line. Every acknowledged event must be stored.
func TestSoak(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t, "--alert-retention", "1s", "--idempotency-window", "5s")
	c := b.admin(t)
	idle, err := b.broker.rssKB()
	if err != nil {
		t.Fatal(err)
	}
	events := scaled(300000)
	alerts := events / 2
	const workers = 16
	var next, done, fired, resolved atomic.Int64
	var mu sync.Mutex
	retries := map[string]int{}
	failed := []string{}
	samples := make([]int, 0, 10)
	var sampleMu sync.Mutex
	sample := func(k int64) {
		// At every tenth of the events.
		if k%int64(events/10) != 0 {
			return
		}
		kb, err := b.broker.rssKB()
		if err == nil {
			sampleMu.Lock()
			samples = append(samples, kb)
			sampleMu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	call := func(id, key, what string, f func(ctx context.Context) error) bool {
		kctx := client.WithIdempotencyKey(ctx, key)
		for attempt := 1; ctx.Err() == nil; attempt++ {
			cctx, cc := context.WithTimeout(kctx, 10*time.Second)
			err := f(cctx)
			cc()
			if err == nil {
				sample(done.Add(1))
				return true
			}
			mu.Lock()
			if !retryable(err) {
				failed = append(failed, fmt.Sprintf("%s %s: %v", what, id, err))
				mu.Unlock()
				return false
			}
			retries[errCode(err)]++
			mu.Unlock()
		}
		return false
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < alerts && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				id := fmt.Sprintf("soak-%06d", i)
				if !call(id, id+"-fire", "fire", func(ctx context.Context) error {
					_, err := c.FireAlert(ctx, schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityInfo, Summary: "soak"})
					return err
				}) {
					continue
				}
				fired.Add(1)
				if call(id, id+"-resolve", "resolve", func(ctx context.Context) error {
					_, err := c.ResolveAlert(ctx, id)
					return err
				}) {
					resolved.Add(1)
				}
			}
		})
	}
	wg.Wait()
	loadTime := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the soak did not finish: %d of %d events", done.Load(), events)
	}
	if len(failed) > 0 {
		t.Errorf("%d calls refused, e.g. %s", len(failed), failed[0])
	}

	// Check: every acknowledged fire and resolve has its event.
	js := b.jetstream(t)
	seen := map[string]uint8{}
	unexpected, dups := 0, 0
	for _, typ := range []struct {
		t   string
		bit uint8
	}{{schemas.TypeAlertFired, 1}, {schemas.TypeAlertResolved, 2}} {
		eachMsg(t, js, schemas.StreamEvents, wire.EventSubject(wire.DefaultPrefix, typ.t), func(m streamMsg) {
			id := strings.TrimPrefix(m.Header.Get("ce-subject"), "alert/")
			if !strings.HasPrefix(id, "soak-") {
				unexpected++
			}
			if seen[id]&typ.bit != 0 {
				dups++
			}
			seen[id] |= typ.bit
		})
	}
	storedEvents := 0
	for _, bits := range seen {
		storedEvents += int(bits&1) + int(bits>>1&1)
	}
	acked := int(fired.Load() + resolved.Load())
	lost := max(0, acked-storedEvents)
	// Resolved alerts leave the bucket after the retention.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	kv, err := js.KeyValue(ctx2, schemas.BucketAlerts)
	if err != nil {
		t.Fatal(err)
	}
	left := -1
	waitFor(t, "resolved alerts to leave the alerts bucket", waitLimit, func() bool {
		keys, err := kv.Keys(ctx2)
		left = len(keys)
		return err != nil || len(keys) == 0
	})

	ok, first, last := plateau(samples)
	mb := func(kb int) string { return fmt.Sprintf("%.0f", float64(kb)/1024) }
	var ss []string
	for _, s := range samples {
		ss = append(ss, mb(s))
	}
	record(t, Row{Scenario: "soak", Offered: num(events), Acknowledged: num(acked), Stored: num(storedEvents), Lost: num(lost),
		Duplicated: num(dups), Unexpected: num(unexpected),
		Notes: fmt.Sprintf("%d alerts fired and resolved by %d workers in %.0f s (%.0f events/s), alert retention 1s, idempotency window 5s; broker RSS idle %s MB, at each 10%%: %s MB; growth first half %s MB, last half %s MB: plateau %v; %d alerts left in the bucket; %s",
			alerts, workers, loadTime.Seconds(), float64(done.Load())/loadTime.Seconds(), mb(idle), strings.Join(ss, " "), mb(first), mb(last), ok, left, retriesNote(retries)),
		Seconds: time.Since(start).Seconds()})
	if len(samples) != 10 {
		t.Fatalf("%d RSS samples, want 10", len(samples))
	}
	if !ok {
		t.Errorf("the broker's RSS grows as a line: %v kB (first half +%d kB, last half +%d kB)", samples, first, last)
	}
	if lost != 0 || unexpected != 0 {
		t.Errorf("lost %d, unexpected %d", lost, unexpected)
	}
}

func retriesNote(retries map[string]int) string {
	h := &history{retries: retries}
	return h.retriesNote()
}
