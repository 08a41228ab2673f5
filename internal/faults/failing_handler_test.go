package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Scenario 5: a webhook that answers 500 to everything. notify-webhook
// retries each event with its manifest's backoff: exactly max_deliver
// POSTs per alert, then one dead letter each, and no POST after it.
func TestFailingHandler(t *testing.T) {
	heavy(t)
	start := time.Now()
	b := newBus(t)
	sk := newSink(t)
	b.startPlugin(t, "notify-webhook", "notify-webhook", nil, nil, "url="+sk.url("/fail"))
	js := b.jetstream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName("notify-webhook"))
	if err != nil {
		t.Fatal(err)
	}
	maxDeliver := cons.CachedInfo().Config.MaxDeliver
	if maxDeliver <= 1 {
		t.Fatalf("notify-webhook's consumer has max_deliver %d", maxDeliver)
	}

	const n = 20
	h := newHistory()
	h.run(ctx, load{c: b.admin(t), n: n, workers: n, prefix: "fail"})
	ids := map[string]bool{}
	for id, o := range h.snapshot() {
		if o.OK {
			ids[id] = true
		}
	}
	// Once the consumer holds nothing (no pending, none waiting for its
	// next try) and the dead-letter path is idle, no POST can follow.
	waitFor(t, "every alert tried and given up on", 3*time.Minute, func() bool {
		return sk.distinct("/fail", "fired", ids) == len(ids) && consumerIdle(t, js, "notify-webhook") && advisoriesDone(t, js)
	})
	tries := sk.counts("/fail", "fired")
	letters := map[string]int{}
	codes := map[string]int{}
	for _, m := range readStream(t, js, schemas.StreamDLQ, wire.DLQSubject(wire.DefaultPrefix, schemas.ConsumerName("notify-webhook"))) {
		letters[strings.TrimPrefix(m.Header.Get("ce-subject"), "alert/")]++
		codes[m.Header.Get(schemas.HeaderDLQCode)+"/"+m.Header.Get(schemas.HeaderDLQCause)]++
	}
	lost, dups, unexpected, posts := 0, 0, 0, 0
	hist := map[int]int{}
	for id := range ids {
		posts += tries[id]
		hist[tries[id]]++
		if tries[id] != maxDeliver {
			t.Errorf("alert %s: %d POSTs, want exactly max_deliver = %d", id, tries[id], maxDeliver)
		}
		switch {
		case letters[id] == 0:
			lost++
			t.Errorf("alert %s: no dead letter after %d tries", id, tries[id])
		case letters[id] > 1:
			t.Errorf("alert %s: %d dead letters", id, letters[id])
		}
		if tries[id] > maxDeliver || letters[id] > 1 {
			dups++
		}
	}
	for id := range tries {
		if !ids[id] {
			unexpected++
		}
	}
	for id := range letters {
		if !ids[id] {
			unexpected++
		}
	}
	var hs, cs []string
	for k, c := range hist {
		hs = append(hs, fmt.Sprintf("%d alerts × %d tries", c, k))
	}
	for k, c := range codes {
		cs = append(cs, fmt.Sprintf("%d %s", c, k))
	}
	sort.Strings(hs)
	sort.Strings(cs)
	stored := len(storedAlerts(t, js, schemas.TypeAlertFired))
	record(t, Row{Scenario: "failing-handler", Offered: num(n), Acknowledged: num(len(ids)), Stored: num(stored), Delivered: num(posts),
		Lost: num(lost), Duplicated: num(dups), Unexpected: num(unexpected),
		Notes: fmt.Sprintf("webhook answers 500; max_deliver %d, backoff 1s/2s/5s; %s; dead letters: %s; delivered = POSTs tried, lost = no dead letter, duplicated = more tries than max_deliver or more than one dead letter",
			maxDeliver, strings.Join(hs, ", "), strings.Join(cs, ", ")),
		Seconds: time.Since(start).Seconds()})
}
