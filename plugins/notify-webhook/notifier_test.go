package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

func TestManifestIsValid(t *testing.T) {
	m := Manifest()
	if err := m.Validate(); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if _, err := sdk.New(m); err != nil {
		t.Fatal(err)
	}
}

func TestBuildMessage(t *testing.T) {
	fired := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	resolved := fired.Add(time.Hour)
	tests := []struct {
		name      string
		eventType string
		alert     schemas.Alert
		channel   string
		username  string
		want      Message
	}{
		{
			name: "fired critical with labels", eventType: schemas.TypeAlertFired, channel: "#ops", username: "plugbus",
			alert: schemas.Alert{ID: "a1", Severity: schemas.SeverityCritical, Summary: "disk full", Status: schemas.AlertFiring,
				Labels: map[string]string{"zone": "b", "host": "m1"}, FiredAt: fired},
			want: Message{Text: "[FIRING] CRITICAL: disk full", Channel: "#ops", Username: "plugbus", Attachments: []Attachment{{
				Color: "danger", Fallback: "[FIRING] CRITICAL: disk full", Footer: "plugbus", Ts: fired.Unix(),
				Fields: []Field{{"severity", "critical", true}, {"alert", "a1", true}, {"host", "m1", true}, {"zone", "b", true}},
			}}},
		},
		{
			name: "fired warning", eventType: schemas.TypeAlertFired,
			alert: schemas.Alert{ID: "a2", Severity: schemas.SeverityWarning, Summary: "slow"},
			want: Message{Text: "[FIRING] WARNING: slow", Attachments: []Attachment{{
				Color: "warning", Fallback: "[FIRING] WARNING: slow", Footer: "plugbus",
				Fields: []Field{{"severity", "warning", true}, {"alert", "a2", true}},
			}}},
		},
		{
			name: "resolved is green", eventType: schemas.TypeAlertResolved,
			alert: schemas.Alert{ID: "a1", Severity: schemas.SeverityCritical, Summary: "disk full", Status: schemas.AlertResolved,
				FiredAt: fired, ResolvedAt: &resolved},
			want: Message{Text: "[RESOLVED] CRITICAL: disk full", Attachments: []Attachment{{
				Color: "good", Fallback: "[RESOLVED] CRITICAL: disk full", Footer: "plugbus", Ts: resolved.Unix(),
				Fields: []Field{{"severity", "critical", true}, {"alert", "a1", true}},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BuildMessage(tt.eventType, tt.alert, tt.channel, tt.username)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	tests := map[string]struct {
		cfg      sdk.Config
		wantCode string
	}{
		"https":       {cfg: sdk.Config{"url": "https://hooks.example.com/services/T/B/X"}},
		"http":        {cfg: sdk.Config{"url": "http://127.0.0.1:8099/alerts"}},
		"missing":     {cfg: sdk.Config{}, wantCode: schemas.CodeMissingParam},
		"not http":    {cfg: sdk.Config{"url": "ftp://x/y"}, wantCode: schemas.CodeInvalidField},
		"relative":    {cfg: sdk.Config{"url": "/alerts"}, wantCode: schemas.CodeInvalidField},
		"unparseable": {cfg: sdk.Config{"url": "http://[::1"}, wantCode: schemas.CodeInvalidField},
	}
	n := NewNotifier(nil)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := n.CheckConfig(context.Background(), tt.cfg)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != tt.wantCode || se.Field != "config.url" {
				t.Errorf("error = %v, want %s on config.url", err, tt.wantCode)
			}
		})
	}
}

func alertEvent(t *testing.T, typ string, data any) event.Event {
	t.Helper()
	e := event.New()
	e.SetID("ev-1")
	e.SetType(typ)
	e.SetSource("/plugbus/broker")
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHandleEventOutcomes(t *testing.T) {
	const secret = "T000/B000/XXXXSECRET"
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		closed     bool // server is gone: network error
		noURL      bool
		data       any
		wantErr    bool
		permanent  bool
		retryAfter time.Duration
		wantInErr  string
	}{
		{name: "200", status: 200},
		{name: "204", status: 204},
		{name: "500 is retried", status: 500, body: "oops", wantErr: true, wantInErr: "500 Internal Server Error: oops"},
		{name: "503 is retried", status: 503, wantErr: true},
		{name: "429 with Retry-After", status: 429, header: map[string]string{"Retry-After": "7"}, wantErr: true, retryAfter: 7 * time.Second},
		{name: "429 without Retry-After", status: 429, wantErr: true},
		{name: "400 is permanent", status: 400, body: "invalid_payload", wantErr: true, permanent: true, wantInErr: "400 Bad Request: invalid_payload"},
		{name: "404 is permanent", status: 404, wantErr: true, permanent: true},
		{name: "network error is retried", closed: true, wantErr: true, wantInErr: "post to http://127.0.0.1"},
		{name: "no url yet is retried", noURL: true, wantErr: true},
		{name: "bad data is permanent", data: []int{1}, wantErr: true, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Message
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s %s", r.Method, r.Header.Get("Content-Type"))
				}
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					t.Errorf("body: %v", err)
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			cfg := sdk.Config{"url": srv.URL + "/services/" + secret, "channel": "#ops"}
			if tt.noURL {
				cfg = sdk.Config{}
			}
			if tt.closed {
				srv.Close()
			}
			var data any = schemas.Alert{ID: "a1", Severity: schemas.SeverityInfo, Summary: "hello"}
			if tt.data != nil {
				data = tt.data
			}
			n := NewNotifier(func() sdk.Config { return cfg })
			err := n.HandleEvent(context.Background(), alertEvent(t, schemas.TypeAlertFired, data))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				if got.Text != "[FIRING] INFO: hello" || got.Channel != "#ops" {
					t.Errorf("server got %+v", got)
				}
				return
			}
			if sdk.IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, !tt.permanent, tt.permanent)
			}
			d, ok := sdk.RetryDelay(err)
			if ok != (tt.retryAfter > 0) || d != tt.retryAfter {
				t.Errorf("RetryDelay = %s %v, want %s", d, ok, tt.retryAfter)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantInErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q leaks the webhook secret", err)
			}
		})
	}
}

// sink is a webhook server whose answer depends on the alert: alert
// "flaky" fails with 500 once then succeeds, "reject" gets 400, anything
// else 200. It counts the attempts per alert.
type sink struct {
	mu       sync.Mutex
	attempts map[string]int
	ok       map[string][]Message
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || len(m.Attachments) == 0 {
		http.Error(w, "bad message", http.StatusUnprocessableEntity)
		return
	}
	var id string
	for _, f := range m.Attachments[0].Fields {
		if f.Title == "alert" {
			id = f.Value
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts[id]++
	switch {
	case id == "reject":
		http.Error(w, "channel_not_found", http.StatusBadRequest)
	case id == "flaky" && s.attempts[id] == 1:
		http.Error(w, "try later", http.StatusInternalServerError)
	default:
		s.ok[id] = append(s.ok[id], m)
	}
}

func (s *sink) counts(id string) (attempts, delivered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[id], len(s.ok[id])
}

// TestAgainstTheBus runs the plugin on a bus with identities on, with the
// credentials the broker issues for it (plugintest.WithAuth): what it does,
// it does with its own permissions.
func TestAgainstTheBus(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithAuth())
	sk := &sink{attempts: map[string]int{}, ok: map[string][]Message{}}
	srv := httptest.NewServer(sk)
	t.Cleanup(srv.Close)

	m := Manifest()
	m.Events.Backoff = []schemas.Duration{schemas.Duration(10 * time.Millisecond)} // keep the test fast
	p, err := sdk.New(m, sdk.WithPrefix(bus.Prefix()), sdk.WithConfig(map[string]any{"url": srv.URL + "/hook", "username": "plugbus"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(p); err != nil {
		t.Fatal(err)
	}
	bus.StartPlugin(t, p)
	if st := bus.Plugin(t, "notify-webhook").State; st != schemas.StateActive {
		t.Fatalf("state = %s", st)
	}

	fire := func(id string) {
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityCritical,
			Summary: "alert " + id, Labels: map[string]string{"host": "m1"}}, nil)
	}

	t.Run("delivered", func(t *testing.T) {
		fire("ok")
		bus.MustCall(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: "ok"}, nil)
		bus.WaitFor(t, func() bool { _, n := sk.counts("ok"); return n == 2 && p.Stats().EventsHandled == 2 })
		sk.mu.Lock()
		got := sk.ok["ok"]
		sk.mu.Unlock()
		if got[0].Text != "[FIRING] CRITICAL: alert ok" || got[1].Text != "[RESOLVED] CRITICAL: alert ok" || got[0].Username != "plugbus" {
			t.Errorf("messages = %+v", got)
		}
	})

	t.Run("redelivered after a 500", func(t *testing.T) {
		before := p.Stats()
		fire("flaky")
		bus.WaitFor(t, func() bool {
			_, delivered := sk.counts("flaky")
			return delivered == 1 && p.Stats().EventsHandled == before.EventsHandled+1
		})
		if attempts, delivered := sk.counts("flaky"); attempts != 2 || delivered != 1 {
			t.Errorf("attempts %d delivered %d, want 2 and 1", attempts, delivered)
		}
		if st := p.Stats(); st.EventsFailed != before.EventsFailed+1 || st.EventsTerminated != before.EventsTerminated {
			t.Errorf("stats %+v after %+v", st, before)
		}
	})

	t.Run("an event delivered again after it was posted is not posted twice", func(t *testing.T) {
		before := p.Stats()
		fire("twice")
		bus.WaitFor(t, func() bool { return p.Stats().EventsHandled == before.EventsHandled+1 })
		// The same event again, as after a lost acknowledgement: stored
		// anew without its Nats-Msg-Id (else the stream drops it as a
		// duplicate), same CloudEvent id.
		ctx := context.Background()
		events, err := bus.JetStream().Stream(ctx, schemas.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := events.GetLastMsgForSubject(ctx, wire.EventSubject(bus.Prefix(), schemas.TypeAlertFired))
		if err != nil {
			t.Fatal(err)
		}
		again := &nats.Msg{Subject: raw.Subject, Header: nats.Header{}, Data: raw.Data}
		for k, v := range raw.Header {
			if k != jetstream.MsgIDHeader {
				again.Header[k] = v
			}
		}
		if _, err := bus.JetStream().PublishMsg(ctx, again); err != nil {
			t.Fatal(err)
		}
		bus.WaitFor(t, func() bool { return p.Stats().EventsHandled == before.EventsHandled+2 })
		if attempts, delivered := sk.counts("twice"); attempts != 1 || delivered != 1 {
			t.Errorf("posted %d times (%d accepted), want once", attempts, delivered)
		}
		if st := p.Stats(); st.OnceSkipped != before.OnceSkipped+1 {
			t.Errorf("OnceSkipped %d, want %d", st.OnceSkipped, before.OnceSkipped+1)
		}
	})

	t.Run("400 is dead-lettered at once", func(t *testing.T) {
		fire("reject")
		bus.WaitFor(t, func() bool { return len(bus.DeadLetters(t, "notify-webhook")) == 1 })
		dl := bus.DeadLetters(t, "notify-webhook")[0]
		if dl.Cause != "terminated" || !strings.Contains(dl.Reason, "400 Bad Request: channel_not_found") || dl.Deliveries != 1 {
			t.Errorf("dead letter = %+v", dl)
		}
		if strings.Contains(dl.Reason, "/hook") {
			t.Errorf("reason %q shows the webhook path", dl.Reason)
		}
		if attempts, _ := sk.counts("reject"); attempts != 1 {
			t.Errorf("attempts = %d, want 1", attempts)
		}
	})

	t.Run("alert data failing its schema is dead-lettered, not posted", func(t *testing.T) {
		// Measured before the SDK checked core event data: {} and empty
		// alert data were posted as real alerts.
		before := len(bus.DeadLetters(t, "notify-webhook"))
		for id, data := range map[string][]byte{"empty-object": []byte(`{}`), "empty": nil} {
			msg := &nats.Msg{Subject: wire.EventSubject(bus.Prefix(), schemas.TypeAlertFired), Data: data, Header: nats.Header{
				"ce-specversion": {"1.0"}, "ce-id": {id}, "ce-source": {wire.BrokerSource}, "ce-type": {schemas.TypeAlertFired},
				"ce-datacontenttype": {event.ApplicationJSON},
			}}
			if _, err := bus.JetStream().PublishMsg(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
		}
		bus.WaitFor(t, func() bool { return len(bus.DeadLetters(t, "notify-webhook")) == before+2 })
		for _, dl := range bus.DeadLetters(t, "notify-webhook")[before:] {
			if dl.Code != schemas.ReasonInvalidData || !strings.Contains(dl.Reason, `field "id": is required`) {
				t.Errorf("dead letter of %s: code %q reason %q, want invalid_data naming the missing id", dl.Header.Get("ce-id"), dl.Code, dl.Reason)
			}
		}
		if attempts, _ := sk.counts(""); attempts != 0 {
			t.Errorf("%d posts of an alert without data", attempts)
		}
		if st := p.Stats(); st.EventsInvalid != 2 {
			t.Errorf("%d events counted invalid, want 2", st.EventsInvalid)
		}
	})

	t.Run("a bad url is refused by the config schema", func(t *testing.T) {
		err := bus.Call(schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "notify-webhook", Set: map[string]any{"url": "not a url"}}, nil)
		if !errors.Is(err, schemas.ErrInvalidField) {
			t.Errorf("error = %v, want invalid_field", err)
		}
		if got := p.Config().String("url", ""); got != srv.URL+"/hook" {
			t.Errorf("url = %q after a refused change", got)
		}
	})
}
