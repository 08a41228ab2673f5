package busctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func (a *app) eventsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get SEQ|ID",
		Short: "Show one event of the event stream, by stream sequence or CloudEvent id",
		Long: `Show one message of PLUGBUS_EVENTS: by its stream sequence (an argument of
digits only), or by its CloudEvent id (the first message with that ce-id: the
broker reads the stream's headers to find it, so the id of an old event in a
long stream takes a moment).

The table shows where it is stored (sequence, time, NATS subject; for a dead
letter replayed to one plugin, which one and which dead letter), every
CloudEvent attribute and extension, and the data (JSON indented). -o json
prints the structured CloudEvent, as events tail -o json does (indented), -o
yaml the same as YAML. A message that is not a CloudEvent is shown as stored
(headers and data), with what is wrong.`,
		Args: exactArgs("SEQ|ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			var req schemas.EventGetRequest
			if seq, err := strconv.ParseUint(args[0], 10, 64); err == nil {
				if seq == 0 {
					return usageErrf("invalid SEQ 0: stream sequences start at 1")
				}
				req.Seq = seq
			} else {
				req.ID = args[0]
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = func(e *schemas.Error) string {
				if e.Code != schemas.CodeNotFound {
					return ""
				}
				if req.ID != "" {
					return "`busctl events tail --all --type TYPE` lists events with their ids; an id of digits only is read as a stream sequence"
				}
				if last, ok := e.Details["last_seq"].(float64); ok {
					first, _ := e.Details["first_seq"].(float64)
					return fmt.Sprintf("the stream holds sequences %d to %d now: `busctl events tail --from-seq %d -n 5` shows the first", uint64(first), uint64(last), uint64(first))
				}
				return ""
			}
			m, err := c.GetEvent(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printStoredEvent(m)
		}),
	}
}

// printStoredEvent shows one message of the event stream.
func (a *app) printStoredEvent(m *schemas.StoredMessage) error {
	msg := &nats.Msg{Subject: m.Subject, Header: nats.Header(m.Header), Data: m.Data}
	e, derr := wire.DecodeEvent(context.Background(), msg)
	if a.structured() {
		if derr != nil {
			fmt.Fprintf(a.stderr, "note: message %d of %s is not a CloudEvent (%v): shown as stored\n", m.Seq, m.Stream, derr)
			return a.printValue(m)
		}
		b, note, err := marshalEvent(e)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.ID(), err)
		}
		if note != "" {
			fmt.Fprintf(a.stderr, "note: event %s at stream seq %d: %s\n", e.ID(), m.Seq, note)
		}
		var v json.RawMessage = b
		return a.printValue(v)
	}
	w := newTable(a.stdout)
	kv := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "%s:\t%s\n", k, strings.NewReplacer("\t", " ", "\n", " ").Replace(v))
	}
	kv("SEQ", strconv.FormatUint(m.Seq, 10))
	kv("STORED", fmtTime(m.Time))
	kv("NATS SUBJECT", m.Subject)
	if cons, _, ok := wire.RedeliveryOf(a.prefix, m.Subject); ok {
		r := "to " + cons
		if of := msg.Header.Get(schemas.HeaderRedeliveryOf); of != "" {
			r += ", replaying dead letter " + of
		}
		kv("REDELIVERY", r)
	}
	if derr != nil {
		kv("MALFORMED", derr.Error())
		keys := sortedKeys(m.Header)
		for _, k := range keys {
			kv("HEADER "+k, strings.Join(m.Header[k], ", "))
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return printData(a.stdout, "", m.Data)
	}
	kv("ID", e.ID())
	kv("TYPE", e.Type())
	kv("SOURCE", e.Source())
	kv("SUBJECT", e.Subject())
	kv("TIME", fmtTime(e.Time()))
	kv("DATACONTENTTYPE", e.DataContentType())
	kv("DATASCHEMA", e.DataSchema())
	kv("SPECVERSION", e.SpecVersion())
	ext := e.Extensions()
	names := make([]string, 0, len(ext))
	for k := range ext {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		kv(strings.ToUpper(k), fmt.Sprint(ext[k]))
	}
	if s := coreSummary(e.Type(), e.Data()); s != "" {
		kv("SUMMARY", s)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return printData(a.stdout, e.DataContentType(), e.Data())
}

// printData shows event data after a blank line: JSON indented, text as
// it is, anything else as its size.
func printData(w interface{ Write([]byte) (int, error) }, contentType string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	if json.Valid(data) && claimsJSON(contentType) {
		// Indented as it is: keys in the event's own order.
		var buf bytes.Buffer
		if err := json.Indent(&buf, data, "", "  "); err == nil {
			buf.WriteByte('\n')
			_, err := w.Write(buf.Bytes())
			return err
		}
	}
	if utf8.Valid(data) {
		_, err := fmt.Fprintln(w, strings.TrimRight(string(data), "\n"))
		return err
	}
	ct := contentType
	if ct == "" {
		ct = "no content type"
	}
	_, err := fmt.Fprintf(w, "(%d bytes of %s, not text: -o json shows them as data_base64)\n", len(data), ct)
	return err
}
