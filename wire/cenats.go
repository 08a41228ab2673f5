package wire

// This file is the CloudEvents codec: events as NATS messages in binary
// content mode, as the CloudEvents NATS protocol binding defines it: every
// attribute and extension in its own lower-case "ce-" header and the data as
// the message body. EncodeEvent writes the headers directly and DecodeEvent
// reads binary-mode 1.0 events directly, for speed; tests check both against
// the CloudEvents SDK's own NATS JetStream binding (EncodeEventWithSDK,
// DecodeEventWithSDK), which stays the reference and decodes everything
// else, structured-mode input (a JSON CloudEvent as the body) included.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// HeaderSpecVersion is the header whose presence marks a binary-mode event.
const HeaderSpecVersion = "ce-specversion"

// HeaderContentType is the plain content type header set next to
// ce-datacontenttype for tools that look only at it. It never carries
// application/cloudevents…, which would mean structured mode.
const HeaderContentType = "Content-Type"

// ErrNotCloudEvent is wrapped by DecodeEvent when a message is not a valid
// CloudEvent in either binary or structured mode.
var ErrNotCloudEvent = errors.New("not a CloudEvent")

// EncodeEvent turns e into a NATS message on subject in binary content mode.
//
// It writes the headers exactly as the CloudEvents SDK's NATS JetStream
// binding (EncodeEventWithSDK) does — the same header names and value formats,
// a test checks it attribute by attribute — without the binding's generic
// machinery, which costs several times the rest of a publish.
func EncodeEvent(_ context.Context, subject string, e *event.Event) (*nats.Msg, error) {
	// The required attributes; the full check (e.Validate) costs as much as
	// the encoding, and every reader validates on DecodeEvent anyway.
	if e.ID() == "" || e.Source() == "" || e.Type() == "" || e.SpecVersion() == "" {
		return nil, fmt.Errorf("invalid cloudevent %q: id, source, type and specversion are required", e.ID())
	}
	hdr := make(nats.Header, 10+len(e.Extensions()))
	hdr["ce-specversion"] = []string{e.SpecVersion()}
	hdr["ce-id"] = []string{e.ID()}
	hdr["ce-source"] = []string{e.Source()}
	hdr["ce-type"] = []string{e.Type()}
	if v := e.Subject(); v != "" {
		hdr["ce-subject"] = []string{v}
	}
	if t := e.Time(); !t.IsZero() {
		hdr["ce-time"] = []string{t.Format(time.RFC3339Nano)}
	}
	if v := e.DataSchema(); v != "" {
		hdr["ce-dataschema"] = []string{v}
	}
	if ct := e.DataContentType(); ct != "" {
		hdr["ce-datacontenttype"] = []string{ct}
		hdr[HeaderContentType] = []string{ct}
	}
	for k, v := range e.Extensions() {
		hdr["ce-"+k] = []string{fmt.Sprint(v)}
	}
	return &nats.Msg{Subject: subject, Header: hdr, Data: e.Data()}, nil
}

// EncodeEventWithSDK encodes like EncodeEvent through the CloudEvents SDK's own
// NATS JetStream binding writer. It is the reference EncodeEvent is checked
// against.
func EncodeEventWithSDK(ctx context.Context, subject string, e *event.Event) (*nats.Msg, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("invalid cloudevent %s: %w", e.ID(), err)
	}
	var body bytes.Buffer
	hdr, err := cejs.WriteMsg(ctx, binding.ToMessage(e), &body)
	if err != nil {
		return nil, fmt.Errorf("encode cloudevent %s: %w", e.ID(), err)
	}
	if ct := e.DataContentType(); ct != "" {
		hdr.Set(HeaderContentType, ct)
	}
	return &nats.Msg{Subject: subject, Header: hdr, Data: body.Bytes()}, nil
}

// DecodeEvent reads a CloudEvent from a NATS message in binary or structured
// mode and validates it. A message that is not a CloudEvent yields an error
// wrapping ErrNotCloudEvent that says what is missing.
//
// Binary-mode CloudEvents 1.0 messages take a direct path that reads the
// ce- headers as the SDK's NATS JetStream binding does (a test checks both
// give the same event); everything else goes through the SDK (DecodeEventWithSDK).
//
// plugbus reads CloudEvents 1.0 only: an event of another spec version, in
// either mode, is refused with an error that names the version it has
// ("unsupported CloudEvents spec version 9.9 (plugbus reads 1.0)").
func DecodeEvent(ctx context.Context, msg *nats.Msg) (*event.Event, error) {
	if vs, binary := msg.Header[HeaderSpecVersion]; binary {
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		if v != event.CloudEventsVersionV1 {
			return nil, unsupportedSpecVersion(v)
		}
		return decodeBinaryV1(msg)
	}
	return DecodeEventWithSDK(ctx, msg)
}

// unsupportedSpecVersion is the error for an event of a spec version other
// than 1.0.
func unsupportedSpecVersion(v string) error {
	shown := v
	if v == "" || strings.ContainsAny(v, " \t\r\n\"") {
		shown = strconv.Quote(v)
	}
	return fmt.Errorf("%w: unsupported CloudEvents spec version %s (plugbus reads %s)", ErrNotCloudEvent, shown, event.CloudEventsVersionV1)
}

// DecodeEventWithSDK decodes through the CloudEvents SDK's NATS JetStream
// binding. Like DecodeEvent, it accepts CloudEvents 1.0 only.
func DecodeEventWithSDK(ctx context.Context, msg *nats.Msg) (*event.Event, error) {
	m := cejs.NewMessage(msg)
	if m.ReadEncoding() == binding.EncodingStructured && !looksLikeJSONObject(msg.Data) {
		return nil, fmt.Errorf("%w: no %s header and the body is not a structured JSON CloudEvent", ErrNotCloudEvent, HeaderSpecVersion)
	}
	e, err := binding.ToEvent(ctx, m)
	if err != nil {
		// The SDK's message for a version it does not know ("message is
		// not in binary mode", "specversion: unknown value") hides the
		// cause: name the version.
		if v, ok := specVersionOf(msg); ok && v != event.CloudEventsVersionV1 {
			return nil, unsupportedSpecVersion(v)
		}
		return nil, fmt.Errorf("%w: %v", ErrNotCloudEvent, err)
	}
	if v := e.SpecVersion(); v != event.CloudEventsVersionV1 {
		return nil, unsupportedSpecVersion(v)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotCloudEvent, err)
	}
	return e, nil
}

// specVersionOf returns the spec version a message claims: its
// ce-specversion header (binary mode), else the specversion member of a
// structured JSON body.
func specVersionOf(msg *nats.Msg) (string, bool) {
	if vs, ok := msg.Header[HeaderSpecVersion]; ok {
		if len(vs) == 0 {
			return "", true
		}
		return vs[0], true
	}
	var doc struct {
		SpecVersion *string `json:"specversion"`
	}
	if json.Unmarshal(msg.Data, &doc) != nil || doc.SpecVersion == nil {
		return "", false
	}
	return *doc.SpecVersion, true
}

// decodeBinaryV1 reads a binary-mode CloudEvents 1.0 message.
func decodeBinaryV1(msg *nats.Msg) (*event.Event, error) {
	e := event.New(event.CloudEventsVersionV1)
	c := e.Context
	for k, vs := range msg.Header {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if len(k) < 4 || k[:3] != "ce-" {
			if k == "content-type" {
				if err := c.SetDataContentType(v); err != nil {
					return nil, fmt.Errorf("%w: content-type %q: %v", ErrNotCloudEvent, v, err)
				}
			}
			continue
		}
		var err error
		switch name := k[3:]; name {
		case "specversion":
		case "id":
			err = c.SetID(v)
		case "source":
			err = c.SetSource(v)
		case "type":
			err = c.SetType(v)
		case "subject":
			err = c.SetSubject(v)
		case "datacontenttype":
			err = c.SetDataContentType(v)
		case "dataschema":
			err = c.SetDataSchema(v)
		case "time":
			var t time.Time
			if t, err = types.ParseTime(v); err == nil {
				err = c.SetTime(t)
			}
		default:
			err = c.SetExtension(name, v)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: header %s %q: %v", ErrNotCloudEvent, k, v, err)
		}
	}
	if e.ID() == "" || e.Source() == "" || e.Type() == "" {
		return nil, fmt.Errorf("%w: the ce-id, ce-source and ce-type headers are required", ErrNotCloudEvent)
	}
	if msg.Data != nil {
		e.DataEncoded = msg.Data
	}
	return &e, nil
}

func looksLikeJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 1 && b[0] == '{'
}
