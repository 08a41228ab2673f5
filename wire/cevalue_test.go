package wire_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/wire"
)

func TestHeaderValueEncoding(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"/plugbus/broker", "/plugbus/broker"},
		{"io.plugbus.job.v1.deployed", "io.plugbus.job.v1.deployed"},
		{"a=b,c;d:e/f?g#h&i+j~k", "a=b,c;d:e/f?g#h&i+j~k"},
		{"job/my job", "job/my%20job"},
		{`say "hi"`, "say%20%22hi%22"},
		{"100%", "100%25"},
		{"tab\there", "tab%09here"},
		{"del\x7f", "del%7F"},
		// The binding's own example.
		{"Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"},
		{"ünï", "%C3%BCn%C3%AF"},
		{"", ""},
	}
	for _, c := range cases {
		got, err := wire.EncodeHeaderValue(c.in)
		if err != nil || got != c.want {
			t.Errorf("EncodeHeaderValue(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		back, err := wire.DecodeHeaderValue(got)
		if err != nil || back != c.in {
			t.Errorf("DecodeHeaderValue(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
	if _, err := wire.EncodeHeaderValue("bad \xff utf-8"); err == nil {
		t.Error("invalid UTF-8 encoded without an error")
	}
}

func TestHeaderValueDecoding(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "Euro%20%E2%82%AC%20%F0%9F%98%80", want: "Euro € 😀"},
		// Lower-case hex and needless escapes are accepted.
		{in: "%c3%bc%41", want: "üA"},
		// Double-quoted values (older writers) are unquoted first, then
		// percent-decoded once.
		{in: `"a b"`, want: "a b"},
		{in: `"say \"hi\" \\o/"`, want: `say "hi" \o/`},
		{in: `"50%25"`, want: "50%"},
		// One round only.
		{in: "%2541", want: "%41"},
		// A '%' that starts no escape is kept (the CloudEvents Go SDK
		// writes raw values).
		{in: "100% sure", want: "100% sure"},
		{in: "50%", want: "50%"},
		{in: "%4", want: "%4"},
		{in: "%zz", want: "%zz"},
		// Raw UTF-8, as the SDK writes it.
		{in: "ünï €", want: "ünï €"},
		// An overlong encoding of U+0020 and other invalid UTF-8 is refused.
		{in: "%C0%A0", bad: true},
		{in: "%FF", bad: true},
		{in: "raw \xff", bad: true},
		{in: `"unbalanced " quote"`, bad: true},
		{in: `"lone \"`, bad: true},
	}
	for _, c := range cases {
		got, err := wire.DecodeHeaderValue(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("DecodeHeaderValue(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("DecodeHeaderValue(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// awkward is an event whose string attributes and extension need every
// kind of encoding the binding names.
func awkward(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("id with space")
	e.SetSource("/plugbus/plugins/x")
	e.SetType("io.plugbus.plugin.x.v1.noted")
	e.SetSubject(`job/my "quoted" job ünïcødé € 😀`)
	e.SetTime(time.Date(2026, 11, 22, 10, 0, 0, 5, time.UTC))
	e.SetExtension("note", "café ☕ 100% sure")
	e.SetExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if err := e.SetData(event.ApplicationJSON, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	return &e
}

func sameEvent(t *testing.T, got, want *event.Event) {
	t.Helper()
	gj, _ := got.MarshalJSON()
	wj, _ := want.MarshalJSON()
	if !bytes.Equal(gj, wj) {
		t.Fatalf("events differ:\n got %s\nwant %s", gj, wj)
	}
}

// sdkEncode writes e with the CloudEvents SDK's NATS JetStream binding.
func sdkEncode(t *testing.T, e *event.Event) *nats.Msg {
	t.Helper()
	var body bytes.Buffer
	hdr, err := cejs.WriteMsg(context.Background(), binding.ToMessage(e), &body)
	if err != nil {
		t.Fatal(err)
	}
	return &nats.Msg{Subject: "s", Header: hdr, Data: body.Bytes()}
}

// sdkDecode reads msg with the CloudEvents SDK's NATS JetStream binding.
func sdkDecode(t *testing.T, msg *nats.Msg) *event.Event {
	t.Helper()
	e, err := binding.ToEvent(context.Background(), cejs.NewMessage(msg))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestHeaderValuesInteropWithSDK: events with spaces, quotes, '%' and
// non-ASCII in their attributes, between plugbus's codec and the
// CloudEvents SDK's own NATS JetStream binding, each way, once in memory
// and once through a real nats-server (what the stream stores).
func TestHeaderValuesInteropWithSDK(t *testing.T) {
	ctx := context.Background()
	srv := testnats.Start(t, false)
	nc := testnats.Connect(t, srv.ClientURL())
	viaServer := func(t *testing.T, msg *nats.Msg) *nats.Msg {
		t.Helper()
		sub, err := nc.SubscribeSync("interop.>")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		out := &nats.Msg{Subject: "interop.x", Header: msg.Header, Data: msg.Data}
		if err := nc.PublishMsg(out); err != nil {
			t.Fatal(err)
		}
		got, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, through := range []string{"memory", "nats-server"} {
		pass := func(t *testing.T, m *nats.Msg) *nats.Msg {
			if through == "memory" {
				return m
			}
			return viaServer(t, m)
		}
		t.Run(through, func(t *testing.T) {
			t.Run("ours to ours", func(t *testing.T) {
				msg, err := wire.EncodeEvent(ctx, "s", awkward(t))
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{
					"ce-id":          "id%20with%20space",
					"ce-subject":     "job/my%20%22quoted%22%20job%20%C3%BCn%C3%AFc%C3%B8d%C3%A9%20%E2%82%AC%20%F0%9F%98%80",
					"ce-note":        "caf%C3%A9%20%E2%98%95%20100%25%20sure",
					"ce-source":      "/plugbus/plugins/x",
					"ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				}
				msg = pass(t, msg)
				for k, v := range want {
					if got := msg.Header.Get(k); got != v {
						t.Errorf("header %s = %q, want %q", k, got, v)
					}
				}
				got, err := wire.DecodeEvent(ctx, msg)
				if err != nil {
					t.Fatal(err)
				}
				sameEvent(t, got, awkward(t))
			})
			t.Run("SDK to ours", func(t *testing.T) {
				// The SDK writes the raw values; ours reads them back
				// to the same event (no '%' in them starts an escape).
				msg := pass(t, sdkEncode(t, awkward(t)))
				if got := msg.Header.Get("ce-subject"); got != awkward(t).Subject() {
					t.Fatalf("the SDK's binding now writes ce-subject %q: it encodes values; revisit docs/protocol.md", got)
				}
				got, err := wire.DecodeEvent(ctx, msg)
				if err != nil {
					t.Fatal(err)
				}
				sameEvent(t, got, awkward(t))
			})
			t.Run("ours to SDK", func(t *testing.T) {
				// The SDK does not decode: it sees the encoded form of
				// the values that needed encoding, and exactly the
				// values of the others.
				msg, err := wire.EncodeEvent(ctx, "s", awkward(t))
				if err != nil {
					t.Fatal(err)
				}
				got := sdkDecode(t, pass(t, msg))
				in := awkward(t)
				if got.Source() != in.Source() || got.Type() != in.Type() || !got.Time().Equal(in.Time()) ||
					got.Extensions()["traceparent"] != in.Extensions()["traceparent"] || string(got.Data()) != string(in.Data()) {
					t.Fatalf("values that need no encoding differ: %s", got)
				}
				for name, pair := range map[string][2]string{
					"id":      {got.ID(), in.ID()},
					"subject": {got.Subject(), in.Subject()},
					"note":    {got.Extensions()["note"].(string), in.Extensions()["note"].(string)},
				} {
					enc, _ := wire.EncodeHeaderValue(pair[1])
					if pair[0] != enc {
						t.Errorf("the SDK read %s as %q, want the encoded %q", name, pair[0], enc)
					}
					if dec, err := wire.DecodeHeaderValue(pair[0]); err != nil || dec != pair[1] {
						t.Errorf("%s: DecodeHeaderValue(%q) = %q, %v; want %q", name, pair[0], dec, err, pair[1])
					}
				}
			})
		})
	}
}

// TestDecodeEventHeaderNamesAnyCase: ce- header names are matched whatever
// their case, and the lower-case spelling wins over another one.
func TestDecodeEventHeaderNamesAnyCase(t *testing.T) {
	ctx := context.Background()
	msg := &nats.Msg{Subject: "s", Data: []byte(`{"a":1}`), Header: nats.Header{
		"CE-SPECVERSION": {"1.0"},
		"Ce-Id":          {"id-1"},
		"ce-ID":          {"loses"},
		"ce-id":          {"id-1"},
		"CE-Source":      {"/src"},
		"Ce-Type":        {"t.v1"},
		"CE-Subject":     {"job/a%20b"},
		"Ce-Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"Content-Type":   {"application/json"},
	}}
	e, err := wire.DecodeEvent(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID() != "id-1" || e.Source() != "/src" || e.Type() != "t.v1" || e.Subject() != "job/a b" ||
		e.DataContentType() != "application/json" || e.Extensions()["traceparent"] == nil {
		t.Fatalf("decoded %s", e)
	}
	// ce-datacontenttype wins over Content-Type.
	msg.Header["ce-datacontenttype"] = []string{"text/plain"}
	if e, err = wire.DecodeEvent(ctx, msg); err != nil || e.DataContentType() != "text/plain" {
		t.Fatalf("datacontenttype %q, %v", e.DataContentType(), err)
	}
	// A Content-Type of application/cloudevents means structured mode,
	// whatever ce- headers come with it (the binding's rule).
	structured, _ := sample(t).MarshalJSON()
	mixed := &nats.Msg{Subject: "s", Data: structured, Header: nats.Header{
		"ce-specversion": {"1.0"}, "ce-id": {"header-id"}, "ce-source": {"/h"}, "ce-type": {"h"},
		"content-type": {"application/cloudevents+json"},
	}}
	if e, err = wire.DecodeEvent(ctx, mixed); err != nil || e.ID() != "id-1" {
		t.Fatalf("structured with ce- headers: %v, %v", e, err)
	}
	// A bad value names its header.
	bad := &nats.Msg{Subject: "s", Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"%C0%A0"}, "ce-source": {"/s"}, "ce-type": {"t"}}}
	if _, err := wire.DecodeEvent(ctx, bad); !errors.Is(err, wire.ErrNotCloudEvent) {
		t.Fatalf("overlong encoding accepted: %v", err)
	}
}

// FuzzHeaderValue: whatever encodes decodes back to itself, and decoding
// never panics.
func FuzzHeaderValue(f *testing.F) {
	for _, s := range []string{"", "plain", "a b", `"q"`, "100%", "%41", "Euro € 😀", "\x00\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = wire.DecodeHeaderValue(s)
		enc, err := wire.EncodeHeaderValue(s)
		if err != nil {
			return
		}
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c <= ' ' || c >= 0x7f || c == '"' {
				t.Fatalf("encoded %q has byte %#x", enc, c)
			}
		}
		dec, err := wire.DecodeHeaderValue(enc)
		if err != nil || dec != s {
			t.Fatalf("round trip of %q: %q, %v", s, dec, err)
		}
	})
}
