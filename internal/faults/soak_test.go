package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// The soak's windows: everything the broker keeps for a while after an
// event (the stream's duplicate window, the idempotency window, the
// retention of resolved alerts) is short, so that between floods it
// drains and what is left is what the broker keeps for good.
const (
	soakDedupWindow = 10 * time.Second
	soakIdemWindow  = 5 * time.Second
	soakRetention   = time.Second
)

// plateau is the soak's check on a figure sampled idle and after each
// flood (s[0] idle, s[1] after the first, …): the growth over the later
// floods (s[1] to the last) must stay below half the growth over the first
// (s[0] to s[1]), or below 5% of s[1] when the first hardly grew. A figure
// that grows with history, as the broker's did before retention, grows as
// much in every flood and fails.
func plateau(s []int) (ok bool, first, later int) {
	first, later = s[1]-s[0], s[len(s)-1]-s[1]
	return later <= first/2 || later <= s[1]/20, first, later
}

// memSample is the broker's memory at one point: RSS from /proc after a
// collection, the Go heap in use then, and RSS once the runtime returned
// every free page to the OS (what the broker holds, not pages the
// scavenger has yet to give back).
type memSample struct{ rssKB, heapKB, heldKB int }

// sampleMemory forces a collection in the broker (it runs with --pprof)
// and reads its heap in use and its RSS, then has it return its free
// memory to the OS and reads its RSS again.
func (b *bus) sampleMemory(t *testing.T) memSample {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + b.httpAd + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatalf("force a GC: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	heap := int(gauge(b.metrics(t), "go_memstats_heap_inuse_bytes") / 1024)
	rss, err := b.broker.rssKB()
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c.Post("http://"+b.httpAd+"/debug/free-os-memory", "", nil)
	if err != nil {
		t.Fatalf("return free memory to the OS: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /debug/free-os-memory: %s", resp.Status)
	}
	held, err := b.broker.rssKB()
	if err != nil {
		t.Fatal(err)
	}
	return memSample{rssKB: rss, heapKB: heap, heldKB: held}
}

// Scenario 10: a soak of 300,000 events in three floods — alerts fired and
// resolved, each call with its own idempotency key — with short windows
// (soakDedupWindow, soakIdemWindow, soakRetention). After each flood the
// windows drain (resolved alerts leave the bucket, the stored replies
// expire, the duplicate window passes); then the broker's Go heap in use
// (after a forced GC) and its RSS are sampled. Both must reach a plateau —
// before retention, RSS went 28 → 105 → 148 → 189 MB over three floods and
// the heap was the index of keys that never left. Every acknowledged event
// must be stored, once.
func TestSoak(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t, "--alert-retention", soakRetention.String(), "--idempotency-window", soakIdemWindow.String(),
		"--event-dedup-window", soakDedupWindow.String(), "--pprof")
	c := b.admin(t)
	js := b.jetstream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	alertsKV, err := js.KeyValue(ctx, schemas.BucketAlerts)
	if err != nil {
		t.Fatal(err)
	}
	requests, err := js.Stream(ctx, "KV_"+schemas.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}

	const floods, workers = 3, 16
	events := scaled(300000)
	perFlood := events / floods / 2 // alerts per flood, each fired and resolved
	samples := []memSample{b.sampleMemory(t)}
	var fired, resolved atomic.Int64
	var mu sync.Mutex
	retries := map[string]int{}
	var failed []string
	call := func(id, key, what string, f func(ctx context.Context) error) bool {
		kctx := client.WithIdempotencyKey(ctx, key)
		for ctx.Err() == nil {
			cctx, cc := context.WithTimeout(kctx, 10*time.Second)
			err := f(cctx)
			cc()
			if err == nil {
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
	var loadTime time.Duration
	for flood := range floods {
		floodStart := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < perFlood && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
					id := fmt.Sprintf("soak-%d-%06d", flood, i)
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
		end := time.Now()
		loadTime += end.Sub(floodStart)
		if ctx.Err() != nil {
			t.Fatalf("flood %d did not finish: %d fired, %d resolved", flood+1, fired.Load(), resolved.Load())
		}
		// The windows drain: each wait is for what it names.
		waitFor(t, "resolved alerts to leave the alerts bucket", waitLimit, func() bool {
			st, err := alertsKV.Status(ctx)
			return err == nil && st.Values() == 0
		})
		waitFor(t, "the stored replies to expire", waitLimit, func() bool {
			info, err := requests.Info(ctx)
			return err == nil && info.State.Msgs == 0
		})
		waitFor(t, "the duplicate window to pass", waitLimit, func() bool { return time.Since(end) > soakDedupWindow })
		samples = append(samples, b.sampleMemory(t))
	}
	if len(failed) > 0 {
		t.Errorf("%d calls refused, e.g. %s", len(failed), failed[0])
	}
	b.saveHeapProfile(t, filepath.Join(repoRoot(), "bin", "faults-soak-heap.pprof"))

	// Check: every acknowledged fire and resolve has its event, once.
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

	var held, heap []int
	var figures []string
	mb := func(kb int) string { return fmt.Sprintf("%.0f", float64(kb)/1024) }
	for i, s := range samples {
		held, heap = append(held, s.heldKB), append(heap, s.heapKB)
		label := "idle"
		if i > 0 {
			label = fmt.Sprintf("after flood %d", i)
		}
		figures = append(figures, fmt.Sprintf("%s %s/%s/%s", label, mb(s.rssKB), mb(s.heldKB), mb(s.heapKB)))
	}
	rssOK, rssFirst, rssLater := plateau(held)
	heapOK, heapFirst, heapLater := plateau(heap)
	record(t, Row{Scenario: "soak", Offered: num(events), Acknowledged: num(acked), Stored: num(storedEvents), Lost: num(lost),
		Duplicated: num(dups), Unexpected: num(unexpected),
		Notes: fmt.Sprintf("%d floods of %d alerts fired and resolved by %d workers, %.0f events/s; windows: duplicates %s, idempotency %s, alert retention %s; broker RSS after a GC/RSS once free pages are returned to the OS/Go heap in use, MB: %s; growth in flood 1 then floods 2–%d: RSS held +%s then +%s MB, heap +%s then +%s MB; %s",
			floods, perFlood, workers, float64(acked)/loadTime.Seconds(), soakDedupWindow, soakIdemWindow, soakRetention,
			strings.Join(figures, ", "), floods, mb(rssFirst), mb(rssLater), mb(heapFirst), mb(heapLater), retriesNote(retries)),
		Seconds: time.Since(start).Seconds()})
	if !heapOK {
		t.Errorf("the broker's Go heap grows with history: %v kB idle and after each flood", heap)
	}
	if !rssOK {
		t.Errorf("the broker's RSS (free pages returned to the OS) grows with history: %v kB idle and after each flood", held)
	}
	if lost != 0 || unexpected != 0 || dups != 0 {
		t.Errorf("lost %d, unexpected %d, stored twice %d", lost, unexpected, dups)
	}
}

func retriesNote(retries map[string]int) string {
	h := &history{retries: retries}
	return h.retriesNote()
}
