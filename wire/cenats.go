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
// It writes the headers the CloudEvents SDK's NATS JetStream binding
// (EncodeEventWithSDK) does — the same header names and value formats, a
// test checks it attribute by attribute — without the binding's generic
// machinery, which costs several times the rest of a publish. Unlike the
// SDK's binding, it percent-encodes the values as the NATS binding
// requires (EncodeHeaderValue): a value with a space, '"', '%' or a
// character outside printable ASCII differs from what the SDK writes; any
// other is byte for byte the same.
func EncodeEvent(_ context.Context, subject string, e *event.Event) (*nats.Msg, error) {
	// The required attributes; the full check (e.Validate) costs as much as
	// the encoding, and every reader validates on DecodeEvent anyway.
	if e.ID() == "" || e.Source() == "" || e.Type() == "" || e.SpecVersion() == "" {
		return nil, fmt.Errorf("invalid cloudevent %q: id, source, type and specversion are required", e.ID())
	}
	hdr := make(nats.Header, 10+len(e.Extensions()))
	var bad error
	hdr["ce-specversion"] = []string{e.SpecVersion()}
	setValue(hdr, "ce-id", e.ID(), &bad)
	setValue(hdr, "ce-source", e.Source(), &bad)
	setValue(hdr, "ce-type", e.Type(), &bad)
	if v := e.Subject(); v != "" {
		setValue(hdr, "ce-subject", v, &bad)
	}
	if t := e.Time(); !t.IsZero() {
		hdr["ce-time"] = []string{t.Format(time.RFC3339Nano)}
	}
	if v := e.DataSchema(); v != "" {
		setValue(hdr, "ce-dataschema", v, &bad)
	}
	if ct := e.DataContentType(); ct != "" {
		setValue(hdr, "ce-datacontenttype", ct, &bad)
		// The plain header is NATS's (and HTTP's) own, read by tools as
		// it is: not a ce- attribute, so not percent-encoded.
		hdr[HeaderContentType] = []string{ct}
	}
	for k, v := range e.Extensions() {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		setValue(hdr, "ce-"+k, s, &bad)
	}
	if bad != nil {
		return nil, fmt.Errorf("invalid cloudevent %q: %w", e.ID(), bad)
	}
	return &nats.Msg{Subject: subject, Header: hdr, Data: e.Data()}, nil
}

// setValue sets header key to v percent-encoded; the first value that
// cannot be encoded is kept in *bad.
func setValue(hdr nats.Header, key, v string, bad *error) {
	enc, err := EncodeHeaderValue(v)
	if err != nil && *bad == nil {
		*bad = fmt.Errorf("header %s: %w", key, err)
	}
	hdr[key] = []string{enc}
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
// ce- headers as the NATS binding says: header names matched whatever
// their case (a lower-case name wins over another spelling of it), values
// unquoted and percent-decoded (DecodeHeaderValue). A test checks it gives
// the event the SDK's NATS JetStream binding gives wherever no value needs
// encoding; everything else goes through the SDK (DecodeEventWithSDK). A
// Content-Type of application/cloudevents… means structured mode, as the
// binding says, even when ce- headers are present too.
//
// plugbus reads CloudEvents 1.0 only: an event of another spec version, in
// either mode, is refused with an error that names the version it has
// ("unsupported CloudEvents spec version 9.9 (plugbus reads 1.0)").
func DecodeEvent(ctx context.Context, msg *nats.Msg) (*event.Event, error) {
	vs, binary := msg.Header[HeaderSpecVersion]
	if !binary {
		vs, binary = headerFold(msg.Header, HeaderSpecVersion)
	}
	if binary {
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		if v != event.CloudEventsVersionV1 {
			if d, err := DecodeHeaderValue(v); err == nil {
				v = d
			}
		}
		if v != event.CloudEventsVersionV1 {
			if !structuredContentType(msg.Header) {
				return nil, unsupportedSpecVersion(v)
			}
		} else {
			e, err := decodeBinaryV1(msg)
			if !errors.Is(err, errStructured) {
				return e, err
			}
		}
		// Structured after all: read the body alone.
		return DecodeEventWithSDK(ctx, &nats.Msg{Subject: msg.Subject, Data: msg.Data})
	}
	return DecodeEventWithSDK(ctx, msg)
}

// headerFold looks name (lower case) up in h whatever the case of h's keys.
func headerFold(h nats.Header, name string) ([]string, bool) {
	for k, vs := range h {
		if strings.EqualFold(k, name) {
			return vs, true
		}
	}
	return nil, false
}

// isStructured reports whether a content type means a structured-mode
// CloudEvent (application/cloudevents, +json, -batch…).
func isStructured(ct string) bool {
	const p = "application/cloudevents"
	return len(ct) >= len(p) && strings.EqualFold(ct[:len(p)], p)
}

func structuredContentType(h nats.Header) bool {
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(k, "content-type") && isStructured(vs[0]) {
			return true
		}
	}
	return false
}

// errStructured is how decodeBinaryV1 says the message is structured mode
// after all.
var errStructured = errors.New("structured mode")

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
	vs, ok := msg.Header[HeaderSpecVersion]
	if !ok {
		vs, ok = headerFold(msg.Header, HeaderSpecVersion)
	}
	if ok {
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

// isCEHeader reports whether a header name starts with "ce-", whatever
// its case.
func isCEHeader(k string) bool {
	return len(k) > 3 && k[0]|0x20 == 'c' && k[1]|0x20 == 'e' && k[2] == '-'
}

// isLower reports whether k has no upper-case ASCII letter.
func isLower(k string) bool {
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			return false
		}
	}
	return true
}

// decodeBinaryV1 reads a binary-mode CloudEvents 1.0 message.
func decodeBinaryV1(msg *nats.Msg) (*event.Event, error) {
	e := event.New(event.CloudEventsVersionV1)
	c := e.Context
	contentType, haveDataContentType := "", false
	for k, vs := range msg.Header {
		if len(vs) == 0 {
			continue
		}
		if !isCEHeader(k) {
			if strings.EqualFold(k, "content-type") {
				if isStructured(vs[0]) {
					return nil, errStructured
				}
				if k == "content-type" || contentType == "" {
					contentType = vs[0]
				}
			}
			continue
		}
		name := k
		if !isLower(k) {
			name = strings.ToLower(k)
			if _, dup := msg.Header[name]; dup {
				continue // the lower-case spelling wins
			}
		}
		v, err := DecodeHeaderValue(vs[0])
		if err != nil {
			return nil, fmt.Errorf("%w: header %s: %v", ErrNotCloudEvent, k, err)
		}
		switch attr := name[3:]; attr {
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
			haveDataContentType = true
			err = c.SetDataContentType(v)
		case "dataschema":
			err = c.SetDataSchema(v)
		case "time":
			var t time.Time
			if t, err = types.ParseTime(v); err == nil {
				err = c.SetTime(t)
			}
		default:
			err = c.SetExtension(attr, v)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: header %s %q: %v", ErrNotCloudEvent, k, vs[0], err)
		}
	}
	if contentType != "" && !haveDataContentType {
		if err := c.SetDataContentType(contentType); err != nil {
			return nil, fmt.Errorf("%w: content-type %q: %v", ErrNotCloudEvent, contentType, err)
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
