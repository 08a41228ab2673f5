package broker

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// TestLastN checks the start sequence search against a brute-force count
// on a stream with interleaved subjects and deleted messages.
func TestLastN(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{"t.a", "t.b", "t.c.x", "t.c.y"}
	rng := rand.New(rand.NewPCG(1, 2))
	var stored []string // subject per sequence (1-based), "" when deleted
	for i := 0; i < 300; i++ {
		subj := subjects[rng.IntN(len(subjects))]
		if i > 250 {
			subj = "t.a" // a dense tail of one subject
		}
		if _, err := js.Publish(ctx, subj, nil); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, subj)
	}
	for seq := uint64(5); seq < 300; seq += 7 {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
		stored[seq-1] = ""
	}
	// Purge the head so the stream's first sequence is not 1.
	for seq := uint64(1); seq <= 3; seq++ {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
		stored[seq-1] = ""
	}
	match := func(filter, subj string) bool {
		if subj == "" {
			return false
		}
		switch filter {
		case "":
			return true
		case "t.c.*":
			return strings.HasPrefix(subj, "t.c.")
		}
		return subj == filter
	}
	for _, filter := range []string{"", "t.a", "t.b", "t.c.*"} {
		for _, n := range []uint64{0, 1, 2, 7, 40, 49, 100, 1000} {
			// Brute force: walk back from the end.
			var want window
			for seq := len(stored); seq >= 1 && want.Want < n; seq-- {
				if match(filter, stored[seq-1]) {
					want.Want++
					want.Start = uint64(seq)
				}
			}
			switch {
			case want.Want == 0:
				want.Start = uint64(len(stored)) + 1
			case want.Want < n:
				// Fewer than n match: reading starts at the stream's
				// first sequence, 4.
				want.Start = 4
			}
			var filters []string
			if filter != "" {
				filters = []string{filter}
			}
			got, err := lastN(ctx, s, filters, n)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("filter %q n %d: got %+v, want %+v", filter, n, got, want)
			}
		}
	}
	if info, _ := s.Info(ctx); info.State.Consumers != 0 {
		t.Errorf("%d probe consumers left behind", info.State.Consumers)
	}
}

// streams.read pushes the window, then new messages, into the reader's
// inbox with the embedded server's auth on; streams.stop deletes only the
// readers' consumers; bad requests name the field.
func TestStreamsRead(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a" + string(rune('0'+i)), Severity: schemas.SeverityWarning, Summary: "s"}, nil)
	}
	inbox := tb.nc.NewInbox()
	sub, err := tb.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	var resp schemas.StreamReadResponse
	tb.mustCall(t, schemas.APIStreamsRead, schemas.StreamReadRequest{Stream: schemas.StreamEvents,
		Filters: []string{wire.EventSubject("plugbus", schemas.TypeAlertFired)}, Last: 3, Follow: true, Deliver: inbox}, &resp)
	if resp.Want != 3 || !strings.HasPrefix(resp.Consumer, schemas.ReadConsumerPrefix) {
		t.Fatalf("response %+v", resp)
	}
	next := func() *nats.Msg {
		t.Helper()
		for {
			m, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.Get("Status") == "100" {
				if m.Reply != "" {
					_ = m.Respond(nil)
				}
				continue
			}
			return m
		}
	}
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, next().Header.Get("ce-subject"))
	}
	if strings.Join(ids, ",") != "alert/a2,alert/a3,alert/a4" {
		t.Errorf("window = %v, want the last three alerts", ids)
	}
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "new", Severity: schemas.SeverityWarning, Summary: "s"}, nil)
	if got := next().Header.Get("ce-subject"); got != "alert/new" {
		t.Errorf("followed message %s, want alert/new", got)
	}

	var stop schemas.StreamStopResponse
	tb.mustCall(t, schemas.APIStreamsStop, schemas.StreamStopRequest{Stream: schemas.StreamEvents, Consumer: resp.Consumer}, &stop)
	if !stop.Stopped {
		t.Error("stop did not delete the consumer")
	}
	if _, err := tb.js.Consumer(ctx, schemas.StreamEvents, resp.Consumer); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the reader's consumer is still there: %v", err)
	}
	tb.mustCall(t, schemas.APIStreamsStop, schemas.StreamStopRequest{Stream: schemas.StreamEvents, Consumer: resp.Consumer}, &stop)
	if stop.Stopped {
		t.Error("a second stop says it deleted something")
	}

	// Nothing to deliver: no consumer.
	resp = schemas.StreamReadResponse{}
	tb.mustCall(t, schemas.APIStreamsRead, schemas.StreamReadRequest{Stream: schemas.StreamDLQ, Last: 10, Deliver: inbox}, &resp)
	if resp.Want != 0 || resp.Consumer != "" {
		t.Errorf("empty DLQ: %+v", resp)
	}

	for name, tc := range map[string]struct {
		req   any
		code  string
		field string
	}{
		"unknown stream": {map[string]any{"stream": "KV_plugbus_configs", "last": 1, "deliver": inbox}, schemas.CodeInvalidField, "stream"},
		"deliver to a plugin's subject": {map[string]any{"stream": schemas.StreamEvents, "last": 1, "deliver": "plugbus.plugin.job-policy.config"},
			schemas.CodeInvalidField, "deliver"},
		"wildcard deliver": {map[string]any{"stream": schemas.StreamEvents, "last": 1, "deliver": "_INBOX.>"}, schemas.CodeInvalidField, "deliver"},
		"filter outside the stream": {schemas.StreamReadRequest{Stream: schemas.StreamEvents, Filters: []string{"plugbus.dlq.>"}, Last: 1, Deliver: inbox},
			schemas.CodeInvalidField, "filters[0]"},
		"stop a plugin's consumer": {map[string]any{"stream": schemas.StreamEvents, "consumer": "plugin_notify-webhook"}, schemas.CodeInvalidField, "consumer"},
	} {
		t.Run(name, func(t *testing.T) {
			endpoint := schemas.APIStreamsRead
			if strings.HasPrefix(name, "stop") {
				endpoint = schemas.APIStreamsStop
			}
			b, _ := json.Marshal(tc.req)
			var raw json.RawMessage = b
			wantCode(t, tb.call(t, endpoint, raw, nil), tc.code, tc.field)
		})
	}
}

func TestSubjectWithin(t *testing.T) {
	for _, tc := range []struct {
		f, p string
		want bool
	}{
		{"plugbus.evt.>", "plugbus.evt.>", true},
		{"plugbus.evt.job.v1.*", "plugbus.evt.>", true},
		{"plugbus.evt", "plugbus.evt.>", false},
		{"plugbus.>", "plugbus.evt.>", false},
		{"plugbus.log.h.p.1", "plugbus.log.*.*.*", true},
		{"plugbus.log.h.p.>", "plugbus.log.*.*.*", false},
		{"plugbus.log.*.p.*", "plugbus.log.*.*.*", true},
	} {
		if got := subjectWithin(tc.f, tc.p); got != tc.want {
			t.Errorf("subjectWithin(%q, %q) = %v", tc.f, tc.p, got)
		}
	}
}
