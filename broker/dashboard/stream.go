package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// The live stream (GET /dash/stream): Server-Sent Events with these event
// names (docs/dashboard.md, "The live stream").
const (
	// sseHello opens every stream (helloMsg).
	sseHello = "hello"
	// sseEvent is one CloudEvent of the event stream (eventSummary), with
	// its stream sequence as the SSE id: a browser that reconnects sends
	// it back as Last-Event-ID and gets what came after it, once.
	sseEvent = "ev"
	// sseOverflow says the browser fell behind: {"skipped", "from_seq"};
	// the stream ends after it.
	sseOverflow = "overflow"
	// sseProblem reports a part of the stream that failed: a plugbus error.
	sseProblem = "problem"
)

// Topics a stream can carry (?topics=a,b). events sends every event; the
// others send a notice (data {}) when something changed, coalesced, so a
// page fetches its fragment again.
const (
	topicEvents      = "events"
	topicPlugins     = "plugins"
	topicHosts       = "hosts"
	topicChains      = "chains"
	topicDeadLetters = "dead-letters"
	topicActions     = "actions"
)

var notifyTopics = []string{topicPlugins, topicHosts, topicChains, topicDeadLetters, topicActions}

// maxBacklog bounds ?last=.
const maxBacklog = 5000

// maxPreview bounds the data an event summary carries; the whole event is
// one click away (GET /dash/event/SEQ).
const maxPreview = 2048

// helloMsg opens a stream: where its events start, the stream's last
// sequence when it opened, and the broker's clock (rates are per second
// of the broker's time).
type helloMsg struct {
	StartSeq uint64    `json:"start_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Now      time.Time `json:"now"`
}

// stream is one open live stream.
type stream struct{ cancel context.CancelFunc }

// eventSummary is what the stream sends of one event.
type eventSummary struct {
	Seq     uint64    `json:"seq"`
	Stored  time.Time `json:"stored"`
	Subject string    `json:"subject"`
	ID      string    `json:"id,omitempty"`
	Type    string    `json:"type,omitempty"`
	Source  string    `json:"source,omitempty"`
	// About is the CloudEvent's subject attribute.
	About string     `json:"about,omitempty"`
	Time  *time.Time `json:"time,omitempty"`
	// Data is the data as text (JSON compacted), cut at maxPreview.
	Data      string `json:"data,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// Error says why the message is not a CloudEvent the dashboard reads.
	Error string `json:"error,omitempty"`
}

type sseMsg struct {
	id    uint64 // 0: no id field
	event string
	data  []byte
}

// feed is what the sources of one stream hand its writer: events through
// a bounded buffer, notices coalesced per topic.
type feed struct {
	out chan sseMsg
	// changed wakes the writer when a topic in pending (under mu) has a
	// notice to send; one per topic however many pokes came meanwhile.
	changed chan struct{}
	errs    chan *schemas.Error

	mu         sync.Mutex
	pending    map[string]bool
	overflow   bool
	skipped    uint64
	fromSeq    uint64
	overflowed chan struct{}
}

func newFeed(size int) *feed {
	return &feed{out: make(chan sseMsg, size), changed: make(chan struct{}, 1), errs: make(chan *schemas.Error, 8),
		pending: map[string]bool{}, overflowed: make(chan struct{})}
}

// offer queues an event without ever blocking: when the buffer is full the
// browser has fallen behind, and from then on events are only counted.
func (f *feed) offer(m sseMsg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.overflow {
		f.skipped++
		return
	}
	select {
	case f.out <- m:
	default:
		f.overflow, f.skipped, f.fromSeq = true, 1, m.id
		close(f.overflowed)
	}
}

func (f *feed) poke(topic string) {
	f.mu.Lock()
	f.pending[topic] = true
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// takeNotices returns the topics poked since the last call, sorted, and
// clears them.
func (f *feed) takeNotices() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	topics := slices.Sorted(maps.Keys(f.pending))
	clear(f.pending)
	return topics
}

func (f *feed) problem(e *schemas.Error) {
	select {
	case f.errs <- e:
	default:
	}
}

// serveStream serves GET /dash/stream?topics=…: the events from where the
// browser left off (Last-Event-ID, else ?after=SEQ, else ?from=SEQ, else
// the last ?last=N, default Config.Backlog) and notices of changes.
func (d *Dashboard) serveStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var topics []string
	var events bool
	for _, t := range strings.Split(q.Get("topics"), ",") {
		switch {
		case t == "":
		case t == topicEvents:
			events = true
		case slices.Contains(notifyTopics, t):
			topics = append(topics, t)
		default:
			writeError(w, http.StatusBadRequest, schemas.Errorf(schemas.CodeInvalidField, "topics",
				"unknown topic %q: use %s", t, strings.Join(append([]string{topicEvents}, notifyTopics...), ", ")))
			return
		}
	}
	start, last, err := d.startSeq(r)
	if err != nil {
		status := http.StatusBadRequest
		if schemas.AsError(err).Code == schemas.CodeInternal {
			status = http.StatusServiceUnavailable
		}
		writeError(w, status, err)
		return
	}

	d.mu.Lock()
	gate, closed := d.gate, d.closed
	d.mu.Unlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, &schemas.Error{Code: schemas.CodeUnavailable, Message: "the broker is stopping: the page reconnects to the next one up"})
		return
	}
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st := &stream{cancel: cancel}
	d.mu.Lock()
	d.streams[st] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.streams, st)
		d.mu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}

	f := newFeed(d.cfg.BufferSize)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Each source says when it is on; hello waits for all of them, so a
	// page that saw hello misses no change after it.
	var ready []chan struct{}
	run := func(fn func(ctx context.Context, f *feed, ready func())) {
		r := make(chan struct{})
		ready = append(ready, r)
		var once sync.Once
		done := func() { once.Do(func() { close(r) }) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done()
			fn(ctx, f, done)
		}()
	}
	if events {
		run(func(ctx context.Context, f *feed, ready func()) { d.readEvents(ctx, f, start, ready) })
	}
	for _, t := range topics {
		switch t {
		case topicPlugins:
			run(func(ctx context.Context, f *feed, ready func()) {
				d.watchBucket(ctx, f, schemas.BucketPlugins, t, ready)
			})
		case topicHosts:
			run(func(ctx context.Context, f *feed, ready func()) { d.watchBucket(ctx, f, schemas.BucketHosts, t, ready) })
		case topicActions:
			run(func(ctx context.Context, f *feed, ready func()) {
				d.watchBucket(ctx, f, schemas.BucketActions, t, ready)
			})
		case topicChains:
			run(func(ctx context.Context, f *feed, ready func()) {
				d.watchStream(ctx, f, schemas.StreamEvents, wire.EventSubject(d.cfg.Prefix, schemas.TypeHookChainCompleted), t, ready)
			})
		case topicDeadLetters:
			run(func(ctx context.Context, f *feed, ready func()) {
				d.watchStream(ctx, f, schemas.StreamDLQ, wire.DLQSubjects(d.cfg.Prefix), t, ready)
			})
		}
	}
	for _, r := range ready {
		select {
		case <-r:
		case <-ctx.Done():
			return
		}
	}
	hello, _ := json.Marshal(helloMsg{StartSeq: start, LastSeq: last, Now: time.Now().UTC()})
	if err := sw.retry(retryMs); err != nil {
		return
	}
	if err := sw.send(sseMsg{event: sseHello, data: hello}, true); err != nil {
		return
	}
	d.pump(ctx, sw, f)
}

// pump writes what the feed gets to the browser until ctx ends, a write
// fails, or the browser fell behind (then it says so and ends).
func (d *Dashboard) pump(ctx context.Context, sw *sseWriter, f *feed) {
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case m := <-f.out:
			err = sw.send(m, len(f.out) == 0)
		case <-f.overflowed:
			// What came before the gap, then the notice.
			for err == nil {
				select {
				case m := <-f.out:
					err = sw.send(m, false)
					continue
				default:
				}
				break
			}
			if err == nil {
				f.mu.Lock()
				data, _ := json.Marshal(map[string]uint64{"skipped": f.skipped, "from_seq": f.fromSeq})
				f.mu.Unlock()
				_ = sw.send(sseMsg{event: sseOverflow, data: data}, true)
			}
			return
		case e := <-f.errs:
			data, _ := json.Marshal(e)
			err = sw.send(sseMsg{event: sseProblem, data: data}, true)
		case <-f.changed:
			for _, topic := range f.takeNotices() {
				if err = sw.send(sseMsg{event: topic, data: []byte("{}")}, true); err != nil {
					break
				}
			}
		case <-tick.C:
			err = sw.comment("ping")
		}
		if err != nil {
			return
		}
	}
}

// startSeq works out where a stream's events start, and the stream's last
// sequence now.
func (d *Dashboard) startSeq(r *http.Request) (start, last uint64, err error) {
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.CallTimeout)
	defer cancel()
	s, err := d.cfg.JetStream.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return 0, 0, &schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("read stream %s: %v (is the broker connected to NATS?)", schemas.StreamEvents, err)}
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, &schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("read stream %s: %v (is the broker connected to NATS?)", schemas.StreamEvents, err)}
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	seq := func(name, v string) (uint64, error) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, schemas.Errorf(schemas.CodeInvalidField, name, "%s %q is not a stream sequence (a whole number)", name, v)
		}
		return n, nil
	}
	q := r.URL.Query()
	switch {
	case r.Header.Get("Last-Event-ID") != "":
		n, err := seq("Last-Event-ID", r.Header.Get("Last-Event-ID"))
		return n + 1, last, err
	case q.Get("after") != "":
		n, err := seq("after", q.Get("after"))
		return n + 1, last, err
	case q.Get("from") != "":
		n, err := seq("from", q.Get("from"))
		return max(n, 1), last, err
	}
	n := uint64(d.cfg.Backlog)
	if v := q.Get("last"); v != "" {
		if n, err = seq("last", v); err != nil {
			return 0, 0, err
		}
		n = min(n, maxBacklog)
	}
	start = last + 1
	if n > 0 && last > 0 {
		start = max(first, last-min(n, last)+1, 1)
	}
	return start, last, nil
}

// readEvents sends every event from stream sequence start on, through an
// ordered consumer of its own.
func (d *Dashboard) readEvents(ctx context.Context, f *feed, start uint64, ready func()) {
	cons, err := d.cfg.JetStream.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start, InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("read %s from %d: %v", schemas.StreamEvents, start, err)})
		return
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("read %s: %v", schemas.StreamEvents, err)})
		return
	}
	defer it.Stop()
	ready()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("read %s: %v", schemas.StreamEvents, err)})
			}
			return
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		sum := summarize(ctx, m.Subject(), m.Headers(), m.Data(), meta.Sequence.Stream, meta.Timestamp)
		data, _ := json.Marshal(sum)
		f.offer(sseMsg{id: sum.Seq, event: sseEvent, data: data})
	}
}

// watchBucket pokes topic at every change of a bucket. It watches keys
// only (MetaOnly): plugin records hold configs, which the stream never
// carries; pages fetch what changed through the API, which redacts.
func (d *Dashboard) watchBucket(ctx context.Context, f *feed, bucket, topic string, ready func()) {
	kv, err := d.cfg.JetStream.KeyValue(ctx, bucket)
	if err != nil {
		f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("watch bucket %s: %v", bucket, err)})
		return
	}
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly(), jetstream.UpdatesOnly())
	if err != nil {
		f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("watch bucket %s: %v", bucket, err)})
		return
	}
	defer func() { _ = w.Stop() }()
	ready()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				f.poke(topic)
			}
		}
	}
}

// watchStream pokes topic at every new message of a stream on subject
// (headers only).
func (d *Dashboard) watchStream(ctx context.Context, f *feed, streamName, subject, topic string, ready func()) {
	cons, err := d.cfg.JetStream.OrderedConsumer(ctx, streamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy, HeadersOnly: true,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("watch %s: %v", streamName, err)})
		return
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		f.problem(&schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("watch %s: %v", streamName, err)})
		return
	}
	defer it.Stop()
	ready()
	for {
		if _, err := it.Next(jetstream.NextContext(ctx)); err != nil {
			return
		}
		f.poke(topic)
	}
}

// Close ends every open live stream and refuses new ones (503), so the
// HTTP server's shutdown does not wait for browsers; pages reconnect by
// themselves to whichever broker serves them next. The broker calls it
// when its HTTP server shuts down.
func (d *Dashboard) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for st := range d.streams {
		st.cancel()
	}
}

// holdStreams cuts every open stream and holds new ones until release is
// called: what a network cut does to browsers, on demand (tests).
func (d *Dashboard) holdStreams() (release func()) {
	gate := make(chan struct{})
	d.mu.Lock()
	d.gate = gate
	for st := range d.streams {
		st.cancel()
	}
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			if d.gate == gate {
				d.gate = nil
			}
			d.mu.Unlock()
			close(gate)
		})
	}
}

// openStreams counts the open streams.
func (d *Dashboard) openStreams() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.streams)
}

// sseWriter writes Server-Sent Events, each write bounded by writeTimeout.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func (s *sseWriter) send(m sseMsg, flush bool) error {
	s.buf.Reset()
	if m.id != 0 {
		fmt.Fprintf(&s.buf, "id: %d\n", m.id)
	}
	fmt.Fprintf(&s.buf, "event: %s\n", m.event)
	// JSON has no raw newlines, so one data line holds it.
	s.buf.WriteString("data: ")
	s.buf.Write(m.data)
	s.buf.WriteString("\n\n")
	return s.write(flush)
}

func (s *sseWriter) comment(c string) error {
	s.buf.Reset()
	fmt.Fprintf(&s.buf, ": %s\n\n", c)
	return s.write(true)
}

func (s *sseWriter) retry(ms int) error {
	s.buf.Reset()
	fmt.Fprintf(&s.buf, "retry: %d\n\n", ms)
	return s.write(false)
}

func (s *sseWriter) write(flush bool) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	if flush {
		return s.rc.Flush()
	}
	return nil
}
