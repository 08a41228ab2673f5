package wire_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/wire"
)

func sample(t testing.TB) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID("id-1")
	e.SetSource("/plugbus/broker")
	e.SetType("io.plugbus.job.v1.deployed")
	e.SetDataSchema("https://plugbus.io/schemas/events/job/v1/deployed.json")
	e.SetExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if err := e.SetData(event.ApplicationJSON, map[string]string{"name": "demo"}); err != nil {
		t.Fatal(err)
	}
	return &e
}

func TestEncodeEventBinaryMode(t *testing.T) {
	msg, err := wire.EncodeEvent(context.Background(), "plugbus.evt.job.v1.deployed", sample(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ce-specversion":     "1.0",
		"ce-id":              "id-1",
		"ce-source":          "/plugbus/broker",
		"ce-type":            "io.plugbus.job.v1.deployed",
		"ce-datacontenttype": "application/json",
		"ce-dataschema":      "https://plugbus.io/schemas/events/job/v1/deployed.json",
		"ce-traceparent":     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Content-Type":       "application/json",
	}
	for k, v := range want {
		if got := msg.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if string(msg.Data) != `{"name":"demo"}` {
		t.Errorf("body %s", msg.Data)
	}
}

func TestDecodeEvent(t *testing.T) {
	ctx := context.Background()
	bin, err := wire.EncodeEvent(ctx, "s", sample(t))
	if err != nil {
		t.Fatal(err)
	}
	structured, _ := sample(t).MarshalJSON()
	cases := []struct {
		name    string
		msg     *nats.Msg
		wantErr bool
		// wantMsg, when set, is the exact error message.
		wantMsg string
	}{
		{"binary", bin, false, ""},
		{"structured", &nats.Msg{Subject: "s", Data: structured}, false, ""},
		{"garbage", &nats.Msg{Subject: "s", Data: []byte("garbage")}, true, ""},
		{"empty", &nats.Msg{Subject: "s"}, true, ""},
		{"json but not a cloudevent", &nats.Msg{Subject: "s", Data: []byte(`{"hello":"world"}`)}, true, ""},
		{"binary missing id", &nats.Msg{Subject: "s", Header: nats.Header{"ce-specversion": {"1.0"}, "ce-type": {"t"}, "ce-source": {"/s"}}}, true, ""},
		{"unknown spec version", &nats.Msg{Subject: "s", Header: nats.Header{"ce-specversion": {"9.9"}, "ce-id": {"1"}, "ce-type": {"t"}, "ce-source": {"/s"}}}, true,
			"not a CloudEvent: unsupported CloudEvents spec version 9.9 (plugbus reads 1.0)"},
		{"older spec version", &nats.Msg{Subject: "s", Header: nats.Header{"ce-specversion": {"0.3"}, "ce-id": {"1"}, "ce-type": {"t"}, "ce-source": {"/s"}}}, true,
			"not a CloudEvent: unsupported CloudEvents spec version 0.3 (plugbus reads 1.0)"},
		{"empty spec version", &nats.Msg{Subject: "s", Header: nats.Header{"ce-specversion": {""}, "ce-id": {"1"}, "ce-type": {"t"}, "ce-source": {"/s"}}}, true,
			"not a CloudEvent: unsupported CloudEvents spec version \"\" (plugbus reads 1.0)"},
		{"structured, unknown spec version", &nats.Msg{Subject: "s", Data: []byte(`{"specversion":"9.9","id":"1","type":"t","source":"/s"}`)}, true,
			"not a CloudEvent: unsupported CloudEvents spec version 9.9 (plugbus reads 1.0)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := wire.DecodeEvent(ctx, c.msg)
			if c.wantErr {
				if !errors.Is(err, wire.ErrNotCloudEvent) {
					t.Fatalf("want ErrNotCloudEvent, got %v (%v)", err, e)
				}
				if c.wantMsg != "" && err.Error() != c.wantMsg {
					t.Fatalf("error %q, want %q", err, c.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.ID() != "id-1" || e.Type() != "io.plugbus.job.v1.deployed" || string(e.Data()) != `{"name":"demo"}` {
				t.Fatalf("decoded %s", e)
			}
			if e.Extensions()["traceparent"] == nil {
				t.Fatalf("extension lost: %v", e.Extensions())
			}
		})
	}
}

func TestEncodeEventRejectsInvalidEvent(t *testing.T) {
	e := event.New()
	if _, err := wire.EncodeEvent(context.Background(), "s", &e); err == nil {
		t.Fatal("an event without id, source and type must not encode")
	}
}

// FuzzDecode feeds arbitrary headers and bodies to Decode: it must never
// panic, and whatever it accepts must be a valid CloudEvent.
func FuzzDecodeEvent(f *testing.F) {
	structured, _ := sample(f).MarshalJSON()
	f.Add("1.0", "id", "/src", "type", []byte(`{"a":1}`))
	f.Add("", "", "", "", structured)
	f.Add("0.3", "x", "", "t", []byte("garbage"))
	f.Fuzz(func(t *testing.T, spec, id, source, typ string, body []byte) {
		h := nats.Header{}
		if spec != "" {
			h.Set("ce-specversion", spec)
			h.Set("ce-id", id)
			h.Set("ce-source", source)
			h.Set("ce-type", typ)
		}
		e, err := wire.DecodeEvent(context.Background(), &nats.Msg{Subject: "s", Header: h, Data: body})
		if err == nil {
			if verr := e.Validate(); verr != nil {
				t.Fatalf("accepted an invalid event: %v", verr)
			}
		}
	})
}

// TestEncodeMatchesSDKWriter: Encode writes exactly the headers and body the
// CloudEvents SDK's own binding writer does, for events with and without
// optional attributes and extensions.
func TestEncodeEventMatchesSDKWriter(t *testing.T) {
	ctx := context.Background()
	full := sample(t)
	full.SetSubject("job/demo")
	full.SetExtension("count", 3)
	full.SetExtension("flag", true)
	minimal := event.New()
	minimal.SetID("m")
	minimal.SetSource("urn:x")
	minimal.SetType("t")
	withTime := sample(t)
	withTime.SetTime(time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC))
	for name, e := range map[string]*event.Event{"full": full, "minimal": &minimal, "time": withTime} {
		t.Run(name, func(t *testing.T) {
			got, err := wire.EncodeEvent(ctx, "s", e)
			if err != nil {
				t.Fatal(err)
			}
			want, err := wire.EncodeEventWithSDK(ctx, "s", e)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Header, want.Header) {
				t.Fatalf("headers differ from the SDK writer:\n got %v\nwant %v", got.Header, want.Header)
			}
			if !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("body differs: %q vs %q", got.Data, want.Data)
			}
		})
	}
}

// TestDecodeMatchesSDK: the direct binary path yields the same event as the
// SDK's binding for the same message.
func TestDecodeEventMatchesSDK(t *testing.T) {
	ctx := context.Background()
	full := sample(t)
	full.SetSubject("job/demo")
	full.SetTime(time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC))
	full.SetExtension("count", 3)
	minimal := event.New()
	minimal.SetID("m")
	minimal.SetSource("urn:x")
	minimal.SetType("t")
	for name, e := range map[string]*event.Event{"full": full, "minimal": &minimal} {
		t.Run(name, func(t *testing.T) {
			msg, err := wire.EncodeEvent(ctx, "s", e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.DecodeEvent(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			want, err := wire.DecodeEventWithSDK(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			gj, _ := got.MarshalJSON()
			wj, _ := want.MarshalJSON()
			if !bytes.Equal(gj, wj) {
				t.Fatalf("direct decode differs from the SDK:\n got %s\nwant %s", gj, wj)
			}
		})
	}
	bad := &nats.Msg{Subject: "s", Header: nats.Header{"ce-specversion": {"1.0"}, "ce-id": {"1"}, "ce-type": {"t"}, "ce-source": {"/s"}, "ce-time": {"yesterday"}}}
	if _, err := wire.DecodeEvent(ctx, bad); !errors.Is(err, wire.ErrNotCloudEvent) {
		t.Fatalf("bad time accepted: %v", err)
	}
}
