package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// plugins.verify asks the plugin again: an ACTIVE plugin that says no goes
// to ERROR (the call fails with its error); once it is ready again the
// whole lifecycle runs and it is ACTIVE; a STALE one is not asked.
func TestPluginsVerify(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), HeartbeatInterval: 50 * time.Millisecond})
	p := newFakePlugin(t, s.ClientURL(), manifest("checked", "1.0.0"))
	p.start("plugbus")
	p.register(t, tb, nil)

	var rec schemas.PluginRecord
	tb.mustCall(t, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: "checked"}, &rec)
	if rec.State != schemas.StateActive {
		t.Fatalf("verify of a ready plugin: %+v", rec)
	}
	p.mu.Lock()
	p.notReady = "database unreachable"
	p.mu.Unlock()
	e := wantCode(t, tb.call(t, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: "checked"}, &rec), schemas.CodePluginError, "")
	if e.Plugin != "checked" || !strings.Contains(e.Message, "database unreachable") {
		t.Fatalf("verify error: %+v", e)
	}
	tb.mustCall(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "checked"}, &rec)
	if rec.State != schemas.StateError || rec.LastError == nil || !strings.Contains(rec.LastError.Message, "database unreachable") {
		t.Fatalf("after a failed verify: %+v", rec)
	}
	p.mu.Lock()
	p.notReady = ""
	inits := len(p.configs)
	p.mu.Unlock()
	rec = schemas.PluginRecord{} // decoding leaves absent fields as they were
	tb.mustCall(t, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: "checked"}, &rec)
	if rec.State != schemas.StateActive || rec.LastError != nil {
		t.Fatalf("verify of a plugin in ERROR that is ready again: %+v", rec)
	}
	p.mu.Lock()
	configured := len(p.configs) > inits
	p.mu.Unlock()
	if !configured {
		t.Error("a plugin in ERROR was made ACTIVE without being configured again")
	}

	wantCode(t, tb.call(t, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: "nope"}, &rec), schemas.CodeNotFound, "")
	wantCode(t, tb.call(t, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: "Bad Name"}, &rec), schemas.CodeInvalidField, "name")

	p.stopService()
	waitFor(t, "STALE", func() bool {
		var r schemas.PluginRecord
		tb.mustCall(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "checked"}, &r)
		return r.State == schemas.StateStale
	})
	wantCode(t, tb.call(t, schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: "checked"}, &rec), schemas.CodeNotActive, "name")
}

// alerts.list lists the kept alerts oldest first, by status when asked;
// alerts.get reads one.
func TestAlertsListGet(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	var list schemas.AlertListResponse
	tb.mustCall(t, schemas.APIAlertsList, schemas.AlertListRequest{}, &list)
	if list.Alerts == nil || len(list.Alerts) != 0 {
		t.Fatalf("no alerts: %+v", list)
	}
	for _, id := range []string{"b-first", "a-second"} {
		tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: id, Severity: schemas.SeverityWarning, Summary: "s " + id}, nil)
	}
	tb.mustCall(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: "b-first"}, nil)
	tb.mustCall(t, schemas.APIAlertsList, schemas.AlertListRequest{}, &list)
	if len(list.Alerts) != 2 || list.Alerts[0].ID != "b-first" || list.Alerts[1].ID != "a-second" {
		t.Fatalf("alerts.list: %+v", list)
	}
	tb.mustCall(t, schemas.APIAlertsList, schemas.AlertListRequest{Status: schemas.AlertFiring}, &list)
	if len(list.Alerts) != 1 || list.Alerts[0].ID != "a-second" {
		t.Fatalf("alerts.list firing: %+v", list)
	}
	var a schemas.Alert
	tb.mustCall(t, schemas.APIAlertsGet, schemas.AlertRef{ID: "b-first"}, &a)
	if a.Status != schemas.AlertResolved || a.ResolvedAt == nil || a.Summary != "s b-first" {
		t.Fatalf("alerts.get: %+v", a)
	}
	e := wantCode(t, tb.call(t, schemas.APIAlertsGet, schemas.AlertRef{ID: "nope"}, &a), schemas.CodeNotFound, "id")
	if e.Details[schemas.DetailKind] != "alert" {
		t.Errorf("details %v", e.Details)
	}
	wantCode(t, tb.call(t, schemas.APIAlertsList, map[string]any{"status": "burning"}, &list), schemas.CodeInvalidField, "status")
}

// events.get reads one event by sequence or id, and says what is wrong
// with a request for neither, both, or one that is not there.
func TestEventsGet(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	var fired schemas.AlertResponse
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityWarning, Summary: "s"}, &fired)
	var m schemas.StoredMessage
	tb.mustCall(t, schemas.APIEventsGet, schemas.EventGetRequest{ID: fired.EventID}, &m)
	if m.Stream != schemas.StreamEvents || m.Subject != "plugbus.evt.alert.v1.fired" || m.Header["ce-id"][0] != fired.EventID || len(m.Data) == 0 {
		t.Fatalf("by id: %+v", m)
	}
	var bySeq schemas.StoredMessage
	tb.mustCall(t, schemas.APIEventsGet, schemas.EventGetRequest{Seq: m.Seq}, &bySeq)
	if bySeq.Header["ce-id"][0] != fired.EventID || string(bySeq.Data) != string(m.Data) {
		t.Fatalf("by seq: %+v", bySeq)
	}
	e := wantCode(t, tb.call(t, schemas.APIEventsGet, schemas.EventGetRequest{Seq: 10_000}, &m), schemas.CodeNotFound, "seq")
	if e.Details["last_seq"] == nil {
		t.Errorf("not found by seq: details %v lack the stream's range", e.Details)
	}
	wantCode(t, tb.call(t, schemas.APIEventsGet, schemas.EventGetRequest{ID: "no-such-id"}, &m), schemas.CodeNotFound, "id")
	wantCode(t, tb.call(t, schemas.APIEventsGet, schemas.EventGetRequest{}, &m), schemas.CodeInvalidField, "")
	wantCode(t, tb.call(t, schemas.APIEventsGet, schemas.EventGetRequest{Seq: 1, ID: "x"}, &m), schemas.CodeInvalidField, "")
	if info, _ := tb.b.st.events.Info(context.Background()); info.State.Consumers != 0 {
		t.Errorf("%d scan consumers left behind", info.State.Consumers)
	}
}

// streams.read with from_seq delivers the first N from that sequence.
func TestStreamsReadFromSeq(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	for i := 0; i < 6; i++ {
		tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a" + string(rune('0'+i)), Severity: schemas.SeverityWarning, Summary: "s"}, nil)
	}
	read := func(req schemas.StreamReadRequest) (schemas.StreamReadResponse, []string) {
		t.Helper()
		req.Deliver = tb.nc.NewInbox()
		sub, err := tb.nc.SubscribeSync(req.Deliver)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		var resp schemas.StreamReadResponse
		tb.mustCall(t, schemas.APIStreamsRead, req, &resp)
		var got []string
		for uint64(len(got)) < resp.Want {
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
			got = append(got, m.Header.Get("ce-subject"))
			meta, _ := (&nats.Msg{Subject: m.Subject, Reply: m.Reply, Header: m.Header}).Metadata()
			if len(got) == 1 && meta != nil && req.FromSeq > 0 && meta.Sequence.Stream < req.FromSeq {
				t.Errorf("first message at %d, before from_seq %d", meta.Sequence.Stream, req.FromSeq)
			}
		}
		if resp.Consumer != "" {
			tb.mustCall(t, schemas.APIStreamsStop, schemas.StreamStopRequest{Stream: req.Stream, Consumer: resp.Consumer}, nil)
		}
		return resp, got
	}
	alerts := []string{wire.EventSubject("plugbus", schemas.TypeAlertFired)}
	resp, got := read(schemas.StreamReadRequest{Stream: schemas.StreamEvents, Filters: alerts, FromSeq: 1, Last: 2})
	if resp.Want != 2 || resp.StartSeq != 1 || strings.Join(got, ",") != "alert/a0,alert/a1" {
		t.Fatalf("from 1, 2: %+v %v", resp, got)
	}
	_, got = read(schemas.StreamReadRequest{Stream: schemas.StreamEvents, Filters: alerts, FromSeq: 1, Last: ^uint64(0)})
	if len(got) != 6 {
		t.Fatalf("from 1, all: %v", got)
	}
	// Past the end: nothing, and a reader that follows starts there.
	resp, got = read(schemas.StreamReadRequest{Stream: schemas.StreamEvents, FromSeq: 1000, Last: 5})
	if resp.Want != 0 || len(got) != 0 {
		t.Fatalf("from 1000: %+v %v", resp, got)
	}
	since := time.Now()
	wantCode(t, tb.call(t, schemas.APIStreamsRead, schemas.StreamReadRequest{Stream: schemas.StreamEvents, FromSeq: 1, Since: &since, Last: 1,
		Deliver: tb.nc.NewInbox()}, nil), schemas.CodeInvalidField, "")
}
