package dashboard_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

type sse struct {
	id    string
	event string
	data  string
}

// sseStream reads a live stream of the dashboard.
type sseStream struct {
	t  *testing.T
	ch chan sse
}

// openSSE opens path and checks that it is an event stream.
func (bs *bus) openSSE(t *testing.T, path string, hdr http.Header) *sseStream {
	t.Helper()
	resp := bs.get(t, path, hdr)
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s %s: %s", path, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	s := &sseStream{t: t, ch: make(chan sse, 1024)}
	go func() {
		defer close(s.ch)
		var cur sse
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					s.ch <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data = line[6:]
			}
		}
	}()
	return s
}

// next returns the next message named event, skipping others, within a
// bounded wait.
func (s *sseStream) next(event string) sse {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.ch:
			if !ok {
				s.t.Fatalf("the stream ended before a %q message", event)
			}
			if m.event == event {
				return m
			}
		case <-timeout:
			s.t.Fatalf("no %q message within 10s", event)
		}
	}
}

func (s *sseStream) events(n int) []sse {
	s.t.Helper()
	out := make([]sse, 0, n)
	for len(out) < n {
		out = append(out, s.next("ev"))
	}
	return out
}

// The stream resumes after Last-Event-ID (what a browser sends when it
// reconnects), after ?after=, from ?from=, and starts with the last ?last=
// events; every event carries its stream sequence as its id.
func TestStreamResumes(t *testing.T) {
	bs := startBus(t)
	var ids []string
	for i := range 4 {
		ids = append(ids, bs.fire(t, fmt.Sprintf("resume %d", i)))
	}
	all := bs.openSSE(t, "/dash/stream?topics=events&last=100", nil).events(4)
	for i, e := range all {
		var ev struct {
			Seq uint64 `json:"seq"`
			ID  string `json:"id"`
		}
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID != ids[i] || e.id != strconv.FormatUint(ev.Seq, 10) {
			t.Fatalf("event %d: id %s seq %d (SSE id %s), want id %s and the SSE id = seq", i, ev.ID, ev.Seq, e.id, ids[i])
		}
	}
	first := func(path string, hdr http.Header) sse {
		t.Helper()
		return bs.openSSE(t, path, hdr).next("ev")
	}
	if got := first("/dash/stream?topics=events&last=100", http.Header{"Last-Event-ID": {all[1].id}}); got.id != all[2].id {
		t.Errorf("after Last-Event-ID %s: first event %s, want %s", all[1].id, got.id, all[2].id)
	}
	if got := first("/dash/stream?topics=events&after="+all[2].id, nil); got.id != all[3].id {
		t.Errorf("after=%s: first event %s, want %s", all[2].id, got.id, all[3].id)
	}
	if got := first("/dash/stream?topics=events&from="+all[1].id, nil); got.id != all[1].id {
		t.Errorf("from=%s: first event %s, want it", all[1].id, got.id)
	}
	if got := first("/dash/stream?topics=events&last=2", nil); got.id != all[2].id {
		t.Errorf("last=2: first event %s, want %s", got.id, all[2].id)
	}

	// Live: an event published while the stream is open arrives.
	live := bs.openSSE(t, "/dash/stream?topics=events&last=0", nil)
	live.next("hello")
	id := bs.fire(t, "live")
	if got := live.next("ev"); !strings.Contains(got.data, id) {
		t.Errorf("live: %+v, want event %s", got, id)
	}

	for _, bad := range []string{"/dash/stream?topics=bogus", "/dash/stream?topics=events&after=x", "/dash/stream?topics=events&last=-1"} {
		resp := bs.get(t, bad, nil)
		var e struct{ Code, Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Code != "invalid_field" || e.Message == "" {
			t.Errorf("%s: %s %+v, want 400 invalid_field with a message", bad, resp.Status, e)
		}
	}
}

// A plugin's state change and an action's record reach a stream of every
// notice topic as notices, without the record (it holds config or params).
func TestStreamNotices(t *testing.T) {
	bs := startBus(t)
	s := bs.openSSE(t, "/dash/stream?topics=plugins,hosts,chains,dead-letters,actions", nil)
	s.next("hello")
	cancelled := make(chan error, 1)
	bs.startPlugin(t, flasher(t, cancelled))
	if m := s.next("plugins"); m.data != "{}" || m.id != "" {
		t.Errorf("notice %+v, want data {} and no id", m)
	}
	res, err := bs.api.MachineAction(ctxT(t), schemas.MachineActionRequest{Machine: "m1", Command: "flash", NoWait: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := s.next("actions"); m.data != "{}" || m.id != "" {
		t.Errorf("notice %+v, want data {} and no id", m)
	}
	if _, err := bs.api.CancelAction(ctxT(t), res.ActionID, "the test is over"); err != nil {
		t.Fatal(err)
	}
}

// A broker that stops ends its live streams: its HTTP server's shutdown
// does not wait for browsers, and a browser learns at once.
func TestStreamEndsWhenTheBrokerStops(t *testing.T) {
	bs := startBus(t)
	s := bs.openSSE(t, "/dash/stream?topics=events,plugins,hosts,chains,dead-letters", nil)
	s.next("hello")
	stopped := make(chan struct{})
	go func() { bs.stop(); close(stopped) }()
	ended := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-s.ch:
		case <-ended:
			t.Fatal("the stream is still open 10s after the broker began to stop")
		}
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the broker did not stop")
	}
}
