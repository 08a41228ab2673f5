package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A browser that cannot keep up never holds up the bus: its events wait
// in a bounded buffer, and once that is full the rest are only counted;
// the browser gets what was buffered, then the overflow notice with the
// count and the sequence to reload from, and the stream ends.
func TestFeedOverflow(t *testing.T) {
	f := newFeed(3)
	start := time.Now()
	for seq := uint64(1); seq <= 10; seq++ {
		f.offer(sseMsg{id: seq, event: sseEvent, data: []byte(`{}`)})
	}
	if time.Since(start) > time.Second {
		t.Fatal("offering to a full feed blocked")
	}
	rec := httptest.NewRecorder()
	d := &Dashboard{log: zerolog.Nop()}
	done := make(chan struct{})
	go func() {
		d.pump(context.Background(), &sseWriter{w: rec, rc: http.NewResponseController(rec)}, f)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after the overflow notice")
	}
	out := rec.Body.String()
	for seq := 1; seq <= 3; seq++ {
		if !strings.Contains(out, "id: "+string(rune('0'+seq))+"\n") {
			t.Errorf("event %d (buffered before the overflow) not sent:\n%s", seq, out)
		}
	}
	if strings.Contains(out, "id: 4\n") {
		t.Errorf("event 4 sent after the buffer was full:\n%s", out)
	}
	if !strings.HasSuffix(out, "event: overflow\ndata: {\"from_seq\":4,\"skipped\":7}\n\n") {
		t.Errorf("want the overflow notice last, 7 skipped from seq 4:\n%s", out)
	}
}

// Notices of one topic coalesce: a page that is busy fetching gets one.
func TestFeedNoticesCoalesce(t *testing.T) {
	f := newFeed(1)
	for range 100 {
		f.poke(topicPlugins)
		f.poke(topicActions)
	}
	if n := len(f.changed); n != 1 {
		t.Fatalf("%d wake-ups queued, want 1", n)
	}
	if got := f.takeNotices(); !slices.Equal(got, []string{topicActions, topicPlugins}) {
		t.Fatalf("notices %v, want one per topic", got)
	}
	if got := f.takeNotices(); len(got) != 0 {
		t.Fatalf("notices %v after they were taken", got)
	}
}
