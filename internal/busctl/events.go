package busctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// summaryWidth bounds the data shown in the SUMMARY column.
const summaryWidth = 60

func (a *app) eventsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "events",
		Short: "Read the event stream (tail, get) and the dead letters",
	})
	cmd.AddCommand(a.eventsTailCommand(), a.eventsGetCommand(), a.eventsDLQCommand())
	return cmd
}

func (a *app) eventsTailCommand() *cobra.Command {
	var (
		typ, subject, source, since string
		fromSeq                     uint64
		count                       int
		all, follow                 bool
	)
	cmd := &cobra.Command{
		Use:   "tail [--type T] [--subject S] [--source S] [--since D|TIME | --from-seq N] [-n|--count N | --all] [-f|--follow]",
		Short: "Print the last events of the event stream, oldest first (or from a sequence or time on)",
		Long: `Print the last N events (default 10) of the event stream PLUGBUS_EVENTS, oldest
first, and exit; with --follow keep printing new events until Ctrl-C.

Where to start:
  --from-seq N   from stream sequence N on: the first --count events from
                 there (every one without --count); --from-seq 1 is the
                 stream's beginning
  --since D|TIME from a time on: a duration back from now (10m, 1h30m) or
                 an RFC 3339 time (2025-05-01T12:00:00Z), by when the
                 events were stored: every event since, or with --count
                 the last N of them
--all prints every matching event of the window (the whole stream without
--since or --from-seq).

Which events:
  --type T     one event type (io.plugbus.job.v1.deployed) or a pattern of
               types ("io.plugbus.job.v1.*", "io.plugbus.*.v1.fired",
               "io.plugbus.>"); turned into a subject filter, so the server
               does the filtering
  --subject S  the CloudEvent subject (job/web, machine/m1, alert/ID); a
               shell pattern: "job/*"
  --source S   the CloudEvent source (/plugbus/broker,
               /plugbus/plugins/NAME); a shell pattern: "/plugbus/plugins/*"
--subject and --source are matched by busctl on each event it reads, so
with them busctl reads the whole window (narrow it with --type, --since or
--from-seq); --count then counts the matching events.

The stream is read through the broker (streams.read): it pushes the window
into busctl's inbox from an ephemeral consumer (memory storage, no acks),
deleted when busctl exits: no durable state is left behind. Reading many
events on a terminal shows a progress bar on stderr (never with -o json or
yaml, nor when stdout is not a terminal).

Columns: TIME, TYPE, SUBJECT (the CloudEvent subject, such as job/demo or
machine/m1, else the NATS subject), ID and SUMMARY (a few words for core
events, such as "demo v1 nginx" or "m1 increment → succeeded", else the data;
a dead letter replayed to one plugin starts with "redelivered to CONSUMER:").

-o json prints one structured CloudEvent (JSON) per line, -o yaml one YAML
document per event. A message that is not a valid CloudEvent is shown as a
MALFORMED row with its stream sequence (with -o json or yaml that note goes
to stderr, so stdout stays CloudEvents). Data that is not JSON is shown too:
text as a "data" string, anything else (binary, or bytes that claim to be
JSON and are not) as "data_base64", with a note on stderr for the latter; in
the table, SUMMARY says what it is.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return usageErrf("--count must be 0 or more, got %d", count)
			}
			changed := cmd.Flags().Changed
			if changed("since") && changed("from-seq") {
				return usageErrf("--since and --from-seq both say where to start: give one")
			}
			if all && changed("count") {
				return usageErrf("--all and --count both say how many: give one")
			}
			if changed("from-seq") && fromSeq == 0 {
				return usageErrf("--from-seq must be 1 or more (stream sequences start at 1), got 0")
			}
			w := streamWindow{last: uint64(count), fromSeq: fromSeq, follow: follow, what: "events"}
			if since != "" {
				var err error
				if w.since, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			if all || (!changed("count") && (since != "" || fromSeq > 0)) || (fromSeq > 0 && follow) {
				w.last = math.MaxUint64
			}
			filter := a.prefix + ".evt.>"
			if typ != "" {
				var err error
				if filter, err = typeFilter(a.prefix, typ); err != nil {
					return err
				}
			}
			w.filters = []string{filter}
			match, err := attributeFilter(subject, source)
			if err != nil {
				return err
			}
			var p msgPrinter = &eventPrinter{a: a, table: newStreamTable(a.stdout,
				[]string{"TIME", "TYPE", "SUBJECT", "ID", "SUMMARY"}, []int{20, 30, 30, 36, 0})}
			if match != nil {
				fp := &filterPrinter{inner: p, match: match, inWindow: true}
				switch {
				case w.last == math.MaxUint64:
				case fromSeq > 0:
					fp.first = w.last
				default:
					fp.keepLast = w.last
				}
				if w.last == 0 {
					fp.first, fp.keepLast = 0, 0
					fp.none = true
				}
				w.last, p = math.MaxUint64, fp
			}
			return a.readStream(cmd.Context(), schemas.StreamEvents, w, p)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "event type or pattern, such as io.plugbus.job.v1.deployed or io.plugbus.job.v1.* (default: all)")
	f.StringVar(&subject, "subject", "", "only events whose CloudEvent subject matches, such as job/web or 'job/*'")
	f.StringVar(&source, "source", "", "only events whose CloudEvent source matches, such as /plugbus/broker or '/plugbus/plugins/*'")
	f.StringVar(&since, "since", "", "start at this time: a duration back from now (10m) or an RFC 3339 time")
	f.Uint64Var(&fromSeq, "from-seq", 0, "start at this stream sequence (1 is the beginning)")
	f.IntVarP(&count, "count", "n", 10, "how many events: the last N (with --from-seq the first N from there; with --since default all since)")
	f.BoolVar(&all, "all", false, "every matching event of the window")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until Ctrl-C")
	return cmd
}

// attributeFilter matches events by CloudEvent subject and source (shell
// patterns, see path.Match); nil when neither is given.
func attributeFilter(subject, source string) (func(*client.StreamMsg) bool, error) {
	for flag, pat := range map[string]string{"subject": subject, "source": source} {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, usageErrf("invalid --%s %q: %v (a shell pattern such as 'job/*')", flag, pat, err)
		}
	}
	if subject == "" && source == "" {
		return nil, nil
	}
	ok := func(pat, v string) bool {
		if pat == "" {
			return true
		}
		m, _ := path.Match(pat, v)
		return m
	}
	return func(msg *client.StreamMsg) bool {
		subj, src := msg.Header.Get("ce-subject"), msg.Header.Get("ce-source")
		if msg.Header.Get("ce-specversion") == "" {
			// Not binary mode: the attributes are in the body.
			e, err := wire.DecodeEvent(context.Background(), natsMsg(msg))
			if err != nil {
				return false
			}
			subj, src = e.Subject(), e.Source()
		}
		return ok(subject, subj) && ok(source, src)
	}, nil
}

// errStopRead, from a msgPrinter, ends a read that has what it wants.
var errStopRead = errors.New("stop reading")

// filterPrinter passes on the messages match accepts: with keepLast, only
// the last keepLast of the window (then every new one); with first, the
// first ones and stops; with none, only new ones after the window.
type filterPrinter struct {
	inner    msgPrinter
	match    func(*client.StreamMsg) bool
	keepLast uint64
	first    uint64
	none     bool
	inWindow bool
	ring     []*client.StreamMsg
	printed  uint64
}

func (p *filterPrinter) print(msg *client.StreamMsg) error {
	if !p.match(msg) {
		return nil
	}
	if p.inWindow {
		switch {
		case p.none:
			return nil
		case p.keepLast > 0:
			p.ring = append(p.ring, msg)
			if uint64(len(p.ring)) > p.keepLast {
				p.ring = p.ring[1:]
			}
			return nil
		}
	}
	if err := p.inner.print(msg); err != nil {
		return err
	}
	p.printed++
	if p.first > 0 && p.printed >= p.first {
		return errStopRead
	}
	return nil
}

func (p *filterPrinter) endBatch() error {
	if p.inWindow {
		p.inWindow = false
		for _, m := range p.ring {
			if err := p.inner.print(m); err != nil {
				return err
			}
		}
		p.ring = nil
	}
	return p.inner.endBatch()
}

func (a *app) eventsDLQCommand() *cobra.Command {
	var (
		count  int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "dlq [--count N] [--follow]",
		Short: "Print the last dead letters (events a plugin failed to process), oldest first",
		Long: `Print the last N dead letters (default 10) of stream PLUGBUS_DLQ, oldest first:
when they were dead-lettered, the event's type and id, the plugin consumer
that gave up, the event's sequence in PLUGBUS_EVENTS, how many deliveries
were tried and why it failed.

-o json prints one object per line with every header of the dead letter and
the event decoded as a CloudEvent (data that is not JSON or text as
"data_base64", as events tail shows it).`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return usageErrf("--count must be 0 or more, got %d", count)
			}
			p := &dlqPrinter{a: a, table: newStreamTable(a.stdout,
				[]string{"TIME", "SEQ", "TYPE", "ID", "CONSUMER", "STREAM-SEQ", "DELIVERIES", "REASON"},
				[]int{20, 3, 30, 36, 8, 10, 10, 0})}
			return a.readStream(cmd.Context(), schemas.StreamDLQ, streamWindow{last: uint64(count), follow: follow, what: "dead letters"}, p)
		}),
	}
	cmd.Flags().IntVarP(&count, "count", "n", 10, "how many of the last dead letters to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new dead letters until Ctrl-C")
	return cmd
}

// typeFilter turns an event type or type pattern into the subject filter
// of the event stream.
func typeFilter(prefix, typ string) (string, error) {
	subj := wire.EventSubject(prefix, typ)
	if strings.ContainsAny(typ, " \t\r\n") {
		return "", usageErrf("invalid --type %q: no spaces allowed", typ)
	}
	toks := strings.Split(subj, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return "", usageErrf("invalid --type %q: empty part between dots", typ)
		case tok == ">" && i != len(toks)-1:
			return "", usageErrf("invalid --type %q: > may only come last", typ)
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return "", usageErrf("invalid --type %q: * and > must stand alone between dots (io.plugbus.job.v1.*)", typ)
		}
	}
	return subj, nil
}

// msgPrinter shows the messages of a stream.
type msgPrinter interface {
	// print shows one message.
	print(msg *client.StreamMsg) error
	// endBatch is called once the last N messages are shown (before
	// --follow goes on with new ones). It may be called more than once.
	endBatch() error
}

// streamWindow says which messages of a stream to read.
type streamWindow struct {
	filters []string
	// last is how many: the last ones (of those stored since since, when
	// set), or with fromSeq the first ones from there; math.MaxUint64 for
	// every one.
	last    uint64
	since   time.Time
	fromSeq uint64
	follow  bool
	// what names the messages on the progress bar ("events").
	what string
}

// readStream prints the messages of stream that w selects, oldest first,
// then with w.follow keeps printing new ones until ctx ends. The broker
// pushes them into busctl's inbox (streams.read): admins hold no consumer
// permissions on the bus's streams.
func (a *app) readStream(ctx context.Context, stream string, w streamWindow, p msgPrinter) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	req := schemas.StreamReadRequest{Stream: stream, Filters: w.filters, Last: w.last, Follow: w.follow, FromSeq: w.fromSeq}
	if !w.since.IsZero() {
		req.Since = &w.since
	}
	cctx, cancel := a.callCtx(ctx)
	r, err := c.ReadStream(cctx, req)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = r.Stop(sctx)
		cancel()
	}()
	want := r.Want()
	if want == 0 && !w.follow {
		return p.endBatch()
	}
	if want == 0 {
		if err := p.endBatch(); err != nil {
			return err
		}
	}
	what := w.what
	if what == "" {
		what = "messages"
	}
	bar := a.progress(want, "reading "+what)
	defer bar.Finish()
	var got uint64
	for w.follow || got < want {
		nctx, ncancel := ctx, context.CancelFunc(func() {})
		if !w.follow {
			// The messages are known to be there: bound the wait anyway.
			nctx, ncancel = a.callCtx(ctx)
		}
		msg, err := r.Next(nctx)
		ncancel()
		if err != nil {
			if w.follow && ctx.Err() != nil {
				return nil // Ctrl-C ends --follow normally
			}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return &streamError{stream: stream, err: fmt.Errorf("%d of %d messages arrived within --timeout %s", got, want, a.timeout)}
			}
			return &streamError{stream: stream, err: err}
		}
		if err := p.print(msg); err != nil {
			if errors.Is(err, errStopRead) {
				bar.Finish()
				return p.endBatch()
			}
			return err
		}
		got++
		bar.Add(1)
		if got == want {
			bar.Finish()
			if err := p.endBatch(); err != nil {
				return err
			}
		}
		// Messages deleted meanwhile (limits, purge) shorten the window.
		if !w.follow && msg.Pending == 0 {
			break
		}
	}
	bar.Finish()
	return p.endBatch()
}

// eventPrinter shows event stream messages as table rows or CloudEvent
// JSON lines.
type eventPrinter struct {
	a     *app
	table *streamTable
}

func (p *eventPrinter) print(msg *client.StreamMsg) error {
	seq, stored := msg.Seq, msg.Time
	e, err := wire.DecodeEvent(context.Background(), natsMsg(msg))
	if err != nil {
		note := fmt.Sprintf("malformed event at stream seq %d: %v", seq, err)
		if p.a.structured() {
			_, werr := fmt.Fprintf(p.a.stderr, "%s (subject %s)\n", note, msg.Subject)
			return werr
		}
		return p.table.add(fmtTime(stored), "MALFORMED", msg.Subject, "", note)
	}
	if p.a.structured() {
		b, note, err := marshalEvent(e)
		if err != nil {
			return fmt.Errorf("encode event %s at stream seq %d: %w", e.ID(), seq, err)
		}
		if note != "" {
			if _, err := fmt.Fprintf(p.a.stderr, "note: event %s at stream seq %d: %s\n", e.ID(), seq, note); err != nil {
				return err
			}
		}
		return p.a.emitRecord(b)
	}
	t := e.Time()
	if t.IsZero() {
		t = stored
	}
	subject := e.Subject()
	if subject == "" {
		subject = msg.Subject
	}
	summary := eventSummary(e)
	if cons, _, ok := wire.RedeliveryOf(p.a.prefix, msg.Subject); ok {
		summary = "redelivered to " + cons + ": " + summary
	}
	return p.table.add(fmtTime(t), e.Type(), subject, e.ID(), truncate(summary, summaryWidth))
}

func (p *eventPrinter) endBatch() error {
	if p.a.structured() {
		return nil
	}
	return p.table.flush()
}

// eventSummary describes an event on one line: a few words for the core
// event types ("demo v1 nginx", "m1 increment → succeeded"), else the data
// as dataSummary shows it.
func eventSummary(e *event.Event) string {
	if s := coreSummary(e.Type(), e.Data()); s != "" {
		return s
	}
	return dataSummary(e)
}

// coreSummary describes the data of a core event, or returns "" when the
// type is not a core one or the data does not decode as its type.
func coreSummary(typ string, data []byte) string {
	if len(data) == 0 {
		return ""
	}
	decode := func(v any) bool { return json.Unmarshal(data, v) == nil }
	words := func(ws ...string) string {
		var out []string
		for _, w := range ws {
			if w = strings.TrimSpace(w); w != "" {
				out = append(out, w)
			}
		}
		return strings.Join(out, " ")
	}
	switch typ {
	case schemas.TypeJobDeployed:
		var d schemas.JobDeployedData
		if decode(&d) && d.Name != "" {
			return words(d.Name, versionWord(d.Version), d.Image)
		}
	case schemas.TypeJobDeleted:
		var d schemas.JobDeletedData
		if decode(&d) && d.Name != "" {
			return words(d.Name, versionWord(d.Version), d.Image)
		}
	case schemas.TypeMachineActionRequested:
		var d schemas.MachineActionRequestedData
		if decode(&d) && d.Machine != "" && d.Command != "" {
			if d.Plugin != "" {
				return words(d.Machine, d.Command, "via", d.Plugin)
			}
			return words(d.Machine, d.Command)
		}
	case schemas.TypeMachineActionProgress:
		var d schemas.MachineActionProgressData
		if decode(&d) && d.Machine != "" && d.Command != "" {
			return words(d.Machine, d.Command, strconv.FormatFloat(d.Percent, 'f', -1, 64)+"%", oneLine(d.Message))
		}
	case schemas.TypeMachineActionCompleted:
		var d schemas.MachineActionCompletedData
		if decode(&d) && d.Machine != "" && d.Command != "" && d.Status != "" {
			s := words(d.Machine, d.Command, "→", d.Status)
			if d.Error != nil {
				s += ": " + oneLine(d.Error.Code+": "+d.Error.Message)
			}
			return s
		}
	case schemas.TypeAlertFired, schemas.TypeAlertResolved:
		var d schemas.Alert
		if decode(&d) && d.Severity != "" {
			return words(d.Severity, oneLine(d.Summary))
		}
	case schemas.TypePluginRegistered:
		var d schemas.PluginRegisteredData
		if decode(&d) && d.Name != "" {
			s := words(d.Name, d.Version)
			if d.PreviousVersion != "" && d.PreviousVersion != d.Version {
				s += " (was " + d.PreviousVersion + ")"
			}
			return s
		}
	case schemas.TypePluginStateChanged:
		var d schemas.PluginStateChangedData
		if decode(&d) && d.Name != "" && d.To != "" {
			from := string(d.From)
			if from == "" {
				from = "-"
			}
			s := d.Name + " " + from + "→" + string(d.To)
			if d.Error != nil && d.To != schemas.StateActive {
				s += ": " + oneLine(d.Error.Code+": "+d.Error.Message)
			}
			return s
		}
	case schemas.TypeHookChainCompleted:
		var d schemas.ChainRecord
		if decode(&d) && d.Hook != "" && d.Outcome != "" {
			steps := "1 step"
			if len(d.Steps) != 1 {
				steps = fmt.Sprintf("%d steps", len(d.Steps))
			}
			s := words(d.Hook, d.Object, d.Outcome) + " (" + steps + ")"
			if d.Error != nil {
				s += ": " + oneLine(d.Error.Message)
			}
			return s
		}
	}
	return ""
}

// versionWord shows a job version as "v1.2.0" (as is when it starts with a
// v already).
func versionWord(v string) string {
	if v == "" || strings.HasPrefix(v, "v") || strings.HasPrefix(v, "V") {
		return v
	}
	return "v" + v
}

// dataSummary shows event data on one line: JSON compacted; anything else
// as its content type and size, then the text when it is text: "(data is
// not JSON: 17 bytes of application/json) {"id": …" for bytes that claim
// to be JSON and are not, "(text/plain, 15 bytes) disk full",
// "(application/octet-stream, 4 bytes)".
func dataSummary(e *event.Event) string {
	data := e.Data()
	if len(data) == 0 {
		return ""
	}
	if json.Valid(data) {
		return compactJSON(data)
	}
	ct := e.DataContentType()
	var s string
	switch {
	case ct == "":
		s = fmt.Sprintf("(data is not JSON: %d bytes, no content type)", len(data))
	case claimsJSON(ct):
		s = fmt.Sprintf("(data is not JSON: %d bytes of %s)", len(data), ct)
	default:
		s = fmt.Sprintf("(%s, %d bytes)", ct, len(data))
	}
	if utf8.Valid(data) {
		s += " " + oneLine(string(data))
	}
	return s
}

// claimsJSON reports whether a content type says the data is JSON:
// application/json, text/json or a +json type (RFC 6839), with or without
// parameters. An event with no content type is JSON too (CloudEvents).
func claimsJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "" || mt == event.ApplicationJSON || mt == event.TextJSON || strings.HasSuffix(mt, "+json")
}

// jsonSafe returns e as it can be written as a structured CloudEvent
// whatever its data: data that claims to be JSON and is not, or that is
// not text, is carried as data_base64 (byte for byte) instead of data,
// which the CloudEvents encoding would write as broken JSON or mangled
// text. note says why, when the event itself is at fault (its data does
// not match its content type); binary data under a binary content type
// needs no note.
func jsonSafe(e *event.Event) (out *event.Event, note string) {
	data := e.Data()
	if len(data) == 0 || e.DataBase64 {
		return e, ""
	}
	switch ct := e.DataContentType(); {
	case claimsJSON(ct) && !json.Valid(data):
		if ct == "" {
			note = "its data is not JSON although it has no content type, which means application/json; shown as data_base64"
		} else {
			note = "its data is not JSON although its content type is " + ct + "; shown as data_base64"
		}
	case !claimsJSON(ct) && !utf8.Valid(data):
	default:
		return e, ""
	}
	c := e.Clone()
	c.DataBase64 = true
	return &c, note
}

// marshalEvent encodes e as a structured CloudEvent (JSON), whatever its
// data (see jsonSafe), with the note to show on stderr.
func marshalEvent(e *event.Event) (b []byte, note string, err error) {
	out, note := jsonSafe(e)
	b, err = json.Marshal(out)
	if err != nil && !out.DataBase64 {
		// A content type the rules above misjudge: base64 always encodes.
		c := e.Clone()
		c.DataBase64 = true
		note = fmt.Sprintf("its data cannot be shown as %s; shown as data_base64", e.DataContentType())
		b, err = json.Marshal(&c)
	}
	return b, note, err
}

// deadLetter is the -o json form of a dead letter.
type deadLetter struct {
	// Seq is the dead letter's sequence in PLUGBUS_DLQ.
	Seq uint64 `json:"seq"`
	// Time is when it was dead-lettered (plugbus-dlq-time, else when it
	// was stored).
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	// Reason, Cause, Consumer, StreamSeq and Deliveries come from the
	// plugbus-dlq-* headers.
	Reason     string `json:"reason,omitempty"`
	Cause      string `json:"cause,omitempty"`
	Consumer   string `json:"consumer,omitempty"`
	StreamSeq  uint64 `json:"stream_seq,omitempty"`
	Deliveries uint64 `json:"deliveries,omitempty"`
	// Headers holds every header of the message (first value of each).
	Headers map[string]string `json:"headers"`
	// Event is the dead letter decoded as a CloudEvent, when it is one.
	// Data that is not JSON although its content type says so, or that is
	// not text, is carried as data_base64.
	Event       *event.Event `json:"event,omitempty"`
	DecodeError string       `json:"decode_error,omitempty"`
}

type dlqPrinter struct {
	a     *app
	table *streamTable
}

func (p *dlqPrinter) print(msg *client.StreamMsg) error {
	h := msg.Header
	d := deadLetter{
		Subject:  msg.Subject,
		Reason:   h.Get(schemas.HeaderDLQReason),
		Cause:    h.Get(schemas.HeaderDLQCause),
		Consumer: h.Get(schemas.HeaderDLQConsumer),
		Headers:  map[string]string{},
	}
	d.StreamSeq, _ = strconv.ParseUint(h.Get(schemas.HeaderDLQStreamSeq), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(h.Get(schemas.HeaderDLQDeliveries), 10, 64)
	for k, v := range h {
		if len(v) > 0 {
			d.Headers[k] = v[0]
		}
	}
	d.Seq, d.Time = msg.Seq, msg.Time.UTC()
	if t, err := time.Parse(time.RFC3339Nano, h.Get(schemas.HeaderDLQTime)); err == nil {
		d.Time = t.UTC()
	}
	typ, id := h.Get("ce-type"), h.Get("ce-id")
	var note string
	if e, err := wire.DecodeEvent(context.Background(), natsMsg(msg)); err == nil {
		d.Event, note = jsonSafe(e)
		typ, id = e.Type(), e.ID()
	} else {
		d.DecodeError = err.Error()
	}
	if p.a.structured() {
		b, err := json.Marshal(d)
		if err != nil && d.Event != nil && !d.Event.DataBase64 {
			// A content type jsonSafe misjudges: base64 always encodes.
			c := d.Event.Clone()
			c.DataBase64 = true
			d.Event = &c
			note = fmt.Sprintf("its data cannot be shown as %s; shown as data_base64", c.DataContentType())
			b, err = json.Marshal(d)
		}
		if err != nil {
			return fmt.Errorf("encode dead letter %d: %w", d.Seq, err)
		}
		if note != "" {
			if _, err := fmt.Fprintf(p.a.stderr, "note: dead letter %d (event %s): %s\n", d.Seq, id, note); err != nil {
				return err
			}
		}
		return p.a.emitRecord(b)
	}
	if typ == "" && d.DecodeError != "" {
		typ = "MALFORMED"
	}
	return p.table.add(fmtTime(d.Time), strconv.FormatUint(d.Seq, 10), typ, id, d.Consumer,
		h.Get(schemas.HeaderDLQStreamSeq), h.Get(schemas.HeaderDLQDeliveries), d.Reason)
}

func (p *dlqPrinter) endBatch() error {
	if p.a.structured() {
		return nil
	}
	return p.table.flush()
}

// natsMsg rebuilds the core NATS message of a JetStream message for
// wire.Decode.
func natsMsg(m *client.StreamMsg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
}

// streamTable is a table whose rows may keep coming after it is first
// printed (--follow): the first batch is aligned as a whole, and later
// rows are padded to the widths of that batch.
type streamTable struct {
	w         io.Writer
	header    []string
	minWidths []int
	widths    []int
	pending   [][]string
	printed   bool
}

// newStreamTable starts a table; minWidths are the column widths used when
// the first batch is empty, so rows that come later with --follow still
// line up. A nil header makes a table of rows only (log lines).
func newStreamTable(w io.Writer, header []string, minWidths []int) *streamTable {
	t := &streamTable{w: w, header: header, minWidths: minWidths, widths: make([]int, len(minWidths))}
	for i := range header {
		t.widths[i] = utf8.RuneCountInString(header[i])
	}
	return t
}

// add queues a row before the first flush, and prints it at once after.
func (t *streamTable) add(cells ...string) error {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(cells[i])
	}
	if !t.printed {
		t.pending = append(t.pending, cells)
		return nil
	}
	return t.write([][]string{cells})
}

// flush prints the header and the queued rows, once.
func (t *streamTable) flush() error {
	if t.printed {
		return nil
	}
	t.printed = true
	if len(t.pending) == 0 {
		for i := range t.widths {
			t.widths[i] = max(t.widths[i], t.minWidths[i])
		}
	}
	for _, r := range t.pending {
		for i, c := range r[:len(r)-1] {
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
		}
	}
	rows := t.pending
	if t.header != nil {
		rows = append([][]string{t.header}, t.pending...)
	}
	t.pending = nil
	return t.write(rows)
}

func (t *streamTable) write(rows [][]string) error {
	tw := newTable(t.w)
	for _, r := range rows {
		padded := make([]string, len(r))
		for i, c := range r {
			if i < len(r)-1 {
				c += strings.Repeat(" ", max(0, t.widths[i]-utf8.RuneCountInString(c)))
			}
			padded[i] = c
		}
		fmt.Fprintln(tw, strings.Join(padded, "\t"))
	}
	return tw.Flush()
}
