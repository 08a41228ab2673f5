package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// summarize reads one stored message as a CloudEvent (binary or
// structured mode, as the bus carries them).
func summarize(ctx context.Context, subject string, hdr nats.Header, data []byte, seq uint64, stored time.Time) eventSummary {
	s := eventSummary{Seq: seq, Stored: stored.UTC(), Subject: subject}
	ev, err := wire.DecodeEvent(ctx, &nats.Msg{Subject: subject, Header: hdr, Data: data})
	if err != nil {
		s.Error = err.Error()
		s.Data, s.Truncated = preview(data)
		return s
	}
	s.ID, s.Type, s.Source, s.About = ev.ID(), ev.Type(), ev.Source(), ev.Subject()
	if t := ev.Time(); !t.IsZero() {
		t = t.UTC()
		s.Time = &t
	}
	s.Data, s.Truncated = preview(ev.Data())
	return s
}

// preview is data as text for a list: JSON compacted, cut at maxPreview
// on a character boundary.
func preview(data []byte) (string, bool) {
	var b bytes.Buffer
	if json.Compact(&b, data) == nil {
		data = b.Bytes()
	}
	if len(data) <= maxPreview {
		return strings.ToValidUTF8(string(data), "�"), false
	}
	cut := maxPreview
	for cut > 0 && !utf8.RuneStart(data[cut]) {
		cut--
	}
	return strings.ToValidUTF8(string(data[:cut]), "�"), true
}

// eventDetail is the whole of one event (GET /dash/event/SEQ).
type eventDetail struct {
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Stored  time.Time `json:"stored"`
	// Attributes are the CloudEvent's context attributes, Extensions its
	// extension attributes.
	Attributes map[string]any `json:"attributes,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
	// Data is the data: JSON as it is, anything else as a string.
	Data  any    `json:"data,omitempty"`
	Error string `json:"error,omitempty"`
}

func (d *Dashboard) serveEvent(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, schemas.Errorf(schemas.CodeInvalidField, "seq", "%q is not a stream sequence (a whole number from 1)", r.PathValue("seq")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.CallTimeout)
	defer cancel()
	s, err := d.cfg.JetStream.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, &schemas.Error{Code: schemas.CodeUnavailable, Message: "read " + schemas.StreamEvents + ": " + err.Error()})
		return
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		writeError(w, http.StatusNotFound, schemas.Errorf(schemas.CodeNotFound, "seq",
			"event %d is not in %s: it was never stored, or the stream's retention removed it", seq, schemas.StreamEvents))
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, &schemas.Error{Code: schemas.CodeUnavailable, Message: "read " + schemas.StreamEvents + ": " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, detail(ctx, raw))
}

func detail(ctx context.Context, raw *jetstream.RawStreamMsg) eventDetail {
	out := eventDetail{Seq: raw.Sequence, Subject: raw.Subject, Stored: raw.Time.UTC()}
	ev, err := wire.DecodeEvent(ctx, &nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
	if err != nil {
		out.Error = err.Error()
		out.Data = dataValue(raw.Data)
		return out
	}
	out.Attributes = map[string]any{"specversion": ev.SpecVersion(), "id": ev.ID(), "source": ev.Source(), "type": ev.Type()}
	for k, v := range map[string]string{"subject": ev.Subject(), "datacontenttype": ev.DataContentType(), "dataschema": ev.DataSchema()} {
		if v != "" {
			out.Attributes[k] = v
		}
	}
	if t := ev.Time(); !t.IsZero() {
		out.Attributes["time"] = t.UTC().Format(time.RFC3339Nano)
	}
	if ext := ev.Extensions(); len(ext) > 0 {
		out.Extensions = ext
	}
	out.Data = dataValue(ev.Data())
	return out
}

func dataValue(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	return strings.ToValidUTF8(string(b), "�")
}
