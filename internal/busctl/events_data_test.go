package busctl_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
)

// oddEvents are events whose data is not JSON, in stream order, with a
// valid one after them: busctl must show each and go on.
var oddEvents = []struct {
	id, contentType string
	data            []byte
	summary         string // what the table's SUMMARY column shows
}{
	{"bad-json", event.ApplicationJSON, []byte(`{"id":`), `(data is not JSON: 6 bytes of application/json) {"id":`},
	{"text", "text/plain", []byte("disk full on m1"), "(text/plain, 15 bytes) disk full on m1"},
	{"binary", "application/octet-stream", []byte{0x00, 0xff, 0xfe, 0x01}, "(application/octet-stream, 4 bytes)"},
	{"no-type", "", []byte("plain words"), "(data is not JSON: 11 bytes, no content type) plain words"},
	{"good", event.ApplicationJSON, []byte(`{"id":"ok"}`), `{"id":"ok"}`},
}

// oddEvent builds one of oddEvents as the CloudEvent a plugin could emit.
func oddEvent(id, contentType string, data []byte) *event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/plugbus/plugins/other")
	e.SetType("io.plugbus.plugin.other.thing.v1.done")
	if contentType != "" {
		e.SetDataContentType(contentType)
	}
	e.DataEncoded = data
	return &e
}

// lines splits output into its lines.
func lines(out string) []string {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// checkOddJSON checks the -o json form of oddEvents[i] (a structured
// CloudEvent): JSON data as "data", text as a "data" string, anything else
// (JSON content type included, when the bytes are not JSON) as
// "data_base64", byte for byte.
func checkOddJSON(t *testing.T, i int, raw json.RawMessage) {
	t.Helper()
	want := oddEvents[i]
	var e event.Event
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("%s: not a CloudEvent: %v: %s", want.id, err, raw)
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("%s: not a valid CloudEvent: %v: %s", want.id, err, raw)
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	switch want.id {
	case "bad-json", "binary", "no-type":
		var b64 string
		if err := json.Unmarshal(fields["data_base64"], &b64); err != nil || b64 != base64.StdEncoding.EncodeToString(want.data) {
			t.Errorf("%s: data_base64 = %s, want the bytes base64-encoded: %s", want.id, fields["data_base64"], raw)
		}
		if _, ok := fields["data"]; ok {
			t.Errorf("%s: has data as well as data_base64: %s", want.id, raw)
		}
	case "text":
		if string(fields["data"]) != `"disk full on m1"` {
			t.Errorf("%s: data = %s, want the text as a string", want.id, fields["data"])
		}
	case "good":
		if string(fields["data"]) != `{"id":"ok"}` {
			t.Errorf("%s: data = %s", want.id, fields["data"])
		}
	}
	if e.ID() != want.id || !bytes.Equal(e.Data(), want.data) || e.DataContentType() != want.contentType {
		t.Errorf("%s: decoded back as id %s, content type %s, data %q; want %s %q", want.id, e.ID(), e.DataContentType(), e.Data(), want.contentType, want.data)
	}
}

// Events whose data is not JSON are shown, not fatal: measured, busctl
// events tail -o json exited 1 at the first one.
func TestEventsTailDataNotJSON(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamEvents, "plugbus.evt.>")
	for _, o := range oddEvents {
		msg, err := cenatsEncode(oddEvent(o.id, o.contentType, o.data), "plugbus.evt.plugin.other.thing.v1.done")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("json", func(t *testing.T) {
		r := b.busctl(t, "events", "tail", "-o", "json")
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		out := lines(r.stdout)
		if len(out) != len(oddEvents) {
			t.Fatalf("%d lines, want %d:\n%s", len(out), len(oddEvents), r.stdout)
		}
		for i, l := range out {
			checkOddJSON(t, i, json.RawMessage(l))
		}
		notes := lines(r.stderr)
		want := []string{
			"note: event bad-json at stream seq 1: its data is not JSON although its content type is application/json; shown as data_base64",
			"note: event no-type at stream seq 4: its data is not JSON although it has no content type, which means application/json; shown as data_base64",
		}
		if strings.Join(notes, "\n") != strings.Join(want, "\n") {
			t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, strings.Join(want, "\n"))
		}
	})

	t.Run("table", func(t *testing.T) {
		r := b.busctl(t, "events", "tail")
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		rows := lines(r.stdout)
		if len(rows) != len(oddEvents)+1 {
			t.Fatalf("want header + %d rows:\n%s", len(oddEvents), r.stdout)
		}
		off := strings.Index(rows[0], "SUMMARY")
		for i, o := range oddEvents {
			if got := rows[i+1][off:]; got != o.summary {
				t.Errorf("summary of %s = %q, want %q", o.id, got, o.summary)
			}
		}
	})
}

// Dead letters whose data is not JSON are shown too.
func TestEventsDLQDataNotJSON(t *testing.T) {
	b := startBus(t)
	b.createStream(t, schemas.StreamDLQ, "plugbus.dlq.>")
	for i, o := range oddEvents {
		msg, err := encodeDLQ(oddEvent(o.id, o.contentType, o.data), i+1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("json", func(t *testing.T) {
		r := b.busctl(t, "events", "dlq", "-o", "json")
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		out := lines(r.stdout)
		if len(out) != len(oddEvents) {
			t.Fatalf("%d lines, want %d:\n%s", len(out), len(oddEvents), r.stdout)
		}
		for i, l := range out {
			var d struct {
				Seq    uint64          `json:"seq"`
				Reason string          `json:"reason"`
				Event  json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal([]byte(l), &d); err != nil {
				t.Fatalf("line %d: %v: %s", i+1, err, l)
			}
			if d.Seq != uint64(i+1) || d.Reason == "" {
				t.Errorf("line %d: seq %d reason %q", i+1, d.Seq, d.Reason)
			}
			checkOddJSON(t, i, d.Event)
		}
		want := "note: dead letter 1 (event bad-json): its data is not JSON although its content type is application/json; shown as data_base64\n" +
			"note: dead letter 4 (event no-type): its data is not JSON although it has no content type, which means application/json; shown as data_base64"
		if strings.TrimSpace(r.stderr) != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
		}
	})

	t.Run("table", func(t *testing.T) {
		r := b.busctl(t, "events", "dlq")
		if r.code != 0 || len(lines(r.stdout)) != len(oddEvents)+1 {
			t.Fatalf("exit %d, want header + %d rows:\n%s\nstderr:\n%s", r.code, len(oddEvents), r.stdout, r.stderr)
		}
	})
}
