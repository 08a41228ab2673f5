package faults

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// sink is the webhook notify-webhook posts to. Under /ok it answers 200,
// under /fail 500 (an always-failing handler). It counts the POSTs per
// alert id and status, read from the Slack-style message notify-webhook
// builds (the "alert" field of its attachment, "[FIRING]"/"[RESOLVED]" in
// the text).
type sink struct {
	srv *httptest.Server
	mu  sync.Mutex
	// posts[path][status][alert id] counts POSTs.
	posts map[string]map[string]map[string]int
	// odd are bodies that name no alert.
	odd []string
	n   int
}

func newSink(t *testing.T) *sink {
	s := &sink{posts: map[string]map[string]map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) url(path string) string { return s.srv.URL + path }

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var msg struct {
		Text        string `json:"text"`
		Attachments []struct {
			Fields []struct {
				Title string `json:"title"`
				Value string `json:"value"`
			} `json:"fields"`
		} `json:"attachments"`
	}
	id, status := "", ""
	if json.Unmarshal(body, &msg) == nil {
		for _, a := range msg.Attachments {
			for _, f := range a.Fields {
				if f.Title == "alert" {
					id = f.Value
				}
			}
		}
		switch {
		case strings.HasPrefix(msg.Text, "[FIRING]"):
			status = "fired"
		case strings.HasPrefix(msg.Text, "[RESOLVED]"):
			status = "resolved"
		}
	}
	s.mu.Lock()
	s.n++
	if id == "" || status == "" {
		s.odd = append(s.odd, string(body))
	} else {
		if s.posts[r.URL.Path] == nil {
			s.posts[r.URL.Path] = map[string]map[string]int{}
		}
		if s.posts[r.URL.Path][status] == nil {
			s.posts[r.URL.Path][status] = map[string]int{}
		}
		s.posts[r.URL.Path][status][id]++
	}
	s.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/fail") {
		http.Error(w, "this path fails every message", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// counts returns a copy of the POST counts of path and status by alert id.
func (s *sink) counts(path, status string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, n := range s.posts[path][status] {
		out[id] = n
	}
	return out
}

// distinct is how many alerts were POSTed at least once on path with
// status, among ids (all when ids is nil).
func (s *sink) distinct(path, status string, ids map[string]bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id := range s.posts[path][status] {
		if ids == nil || ids[id] {
			n++
		}
	}
	return n
}

// total is every POST received, odd ones included.
func (s *sink) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *sink) oddBodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.odd...)
}
