package busctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// defaultLogLines is how many lines `plugins logs` prints without --count
// or --since.
const defaultLogLines = 20

// logTimeLayout shows log times (in UTC) to the millisecond: lines come
// many a second.
const logTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// logMinWidths are the widths of the TIME, HOST/INSTANCE and LEVEL columns
// when --follow starts with no line.
var logMinWidths = []int{len("2006-01-02T15:04:05.000Z"), 8, 5, 0}

func (a *app) pluginsLogsCommand() *cobra.Command {
	var (
		host, since string
		count       int
		follow      bool
	)
	cmd := &cobra.Command{
		Use:   "logs NAME [--host HOST] [--since D|TIME] [-n|--count N] [-f|--follow]",
		Short: "Print a plugin's log lines as hostd forwards them, oldest first",
		Long: `Print the log lines of a plugin's instances from stream PLUGBUS_LOGS, where
hostd publishes them (rate-limited), oldest first: by default the last ` + strconv.Itoa(defaultLogLines) + `
lines and exit; with --follow keep printing new lines until Ctrl-C.

--host keeps the lines of one host. --since starts at a time: a duration back
from now (10m, 1h30m) or an RFC 3339 time (2025-05-01T12:00:00Z), by when the
lines were stored; it prints every line since, or with --count the last N of
them.

Each line shows TIME (when the plugin wrote it, UTC), HOST/INSTANCE, LEVEL,
the message and the line's other fields as key=value, sorted by key. A line
where hostd says how many lines its rate limit dropped shows as WARN with
dropped=N. A message in the stream that is not a log record shows as it is,
with level RAW and the time it was stored.

The stream is read with an ephemeral ordered consumer, as events tail does.
-o json prints one log record (JSON) per line; a message that is not one is
then reported on stderr, so stdout stays log records.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if count < 0 {
				return usageErrf("--count must be 0 or more, got %d", count)
			}
			if err := validLogFilter(name, host); err != nil {
				return err
			}
			var from time.Time
			n := uint64(count)
			if since != "" {
				var err error
				if from, err = parseSince(since, time.Now()); err != nil {
					return err
				}
				if !cmd.Flags().Changed("count") {
					n = math.MaxUint64 // every line since
				}
			}
			p := &logPrinter{a: a, table: newStreamTable(a.stdout, nil, logMinWidths)}
			filter := wire.LogsSubject(a.prefix, host, name)
			return a.readStream(cmd.Context(), schemas.StreamLogs, streamWindow{filters: []string{filter}, last: n, since: from, follow: follow, what: "log lines"}, p)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "", "only the lines of this host (default: every host)")
	f.StringVar(&since, "since", "", "start at this time: a duration back from now (10m) or an RFC 3339 time")
	f.IntVarP(&count, "count", "n", defaultLogLines, "how many of the last lines to print (with --since: default all since)")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines until Ctrl-C")
	return cmd
}

// validLogFilter checks a plugin name and host the way the broker checks
// them (the schema of plugins.restart's request), since both become
// tokens of the subject filter: a dot or a wildcard would read other
// plugins' lines.
func validLogFilter(name, host string) error {
	err := schemas.ValidateValue(schemas.APIPluginHostRequest, schemas.PluginHostRequest{Name: name, Host: host})
	var e *schemas.Error
	if !errors.As(err, &e) {
		return err
	}
	what := fmt.Sprintf("plugin name %q", name)
	if e.Field == "host" {
		what = fmt.Sprintf("--host %q", host)
	}
	msg := e.Message
	if _, after, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "field ") {
		msg = after // the field is named already
	}
	return usageErrf("invalid %s: %s", what, msg)
}

// parseSince reads --since: a positive duration back from now, or an RFC
// 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, usageErrf("invalid --since %q: a duration back from now must be positive, such as 10m", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageErrf("invalid --since %q: want a duration back from now such as 10m or 1h30m, or an RFC 3339 time such as 2025-05-01T12:00:00Z", s)
}

// logPrinter shows log stream messages as aligned lines or log record
// JSON lines.
type logPrinter struct {
	a     *app
	table *streamTable
}

func (p *logPrinter) print(msg *client.StreamMsg) error {
	seq, stored := msg.Seq, msg.Time
	rec, err := decodeLogRecord(msg.Data)
	if err != nil {
		if p.a.structured() {
			_, werr := fmt.Fprintf(p.a.stderr, "not a log record at stream seq %d (subject %s; %v): %s\n",
				seq, msg.Subject, err, rawText(msg.Data))
			return werr
		}
		return p.table.add(stored.UTC().Format(logTimeLayout), subjectSource(p.a.prefix, msg.Subject), levelCell("RAW"), rawText(msg.Data))
	}
	if p.a.structured() {
		return p.a.emitRecord([]byte(compactJSON(msg.Data)))
	}
	level := strings.ToUpper(rec.Level)
	text := rec.Message
	if rec.Truncated {
		text += " (truncated)"
	}
	fields := logFields(rec.Fields)
	if rec.Dropped > 0 {
		level = "WARN"
		if text == "" {
			text = "hostd dropped lines over its rate limit"
		}
		fields = strings.TrimSpace(fields + " dropped=" + strconv.Itoa(rec.Dropped))
	}
	if fields != "" {
		text += "  " + fields
	}
	return p.table.add(rec.Time.UTC().Format(logTimeLayout), rec.Host+"/"+rec.Instance, levelCell(level), text)
}

// levelCell pads a level to the width of the longest (ERROR), so the
// messages line up from one run to the next.
func levelCell(level string) string {
	return fmt.Sprintf("%-5s", level)
}

func (p *logPrinter) endBatch() error {
	if p.a.structured() {
		return nil
	}
	return p.table.flush()
}

// decodeLogRecord reads a message of the log stream: a LogRecord as its
// schema says (checked, so that any other JSON is not taken for one).
// Numbers in fields keep their exact digits.
func decodeLogRecord(data []byte) (*schemas.LogRecord, error) {
	if err := schemas.Validate(schemas.APILogRecord, data); err != nil {
		var e *schemas.Error
		if errors.As(err, &e) {
			return nil, errors.New(e.Message)
		}
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var rec schemas.LogRecord
	if err := dec.Decode(&rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// logFields shows a line's fields as key=value, sorted by key: strings as
// they are (quoted when they hold spaces, quotes or "=", or are empty),
// anything else as compact JSON.
func logFields(fields map[string]any) string {
	parts := make([]string, 0, len(fields))
	for _, k := range sortedKeys(fields) {
		var v string
		switch x := fields[k].(type) {
		case string:
			v = x
			if x == "" || strings.ContainsAny(x, " \t\r\n\"=") || !utf8.ValidString(x) {
				v = strconv.Quote(x)
			}
		default:
			v = fmtValue(x)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// subjectSource reads HOST/INSTANCE from a log subject
// (<prefix>.log.HOST.PLUGIN.INSTANCE), for a message that is not a log
// record.
func subjectSource(prefix, subject string) string {
	toks := strings.Split(strings.TrimPrefix(subject, prefix+".log."), ".")
	if len(toks) != 3 {
		return ""
	}
	return toks[0] + "/" + toks[2]
}

// rawText shows a message body on one line: text as it is, binary as its
// size.
func rawText(data []byte) string {
	if !utf8.Valid(data) {
		return fmt.Sprintf("<%d bytes>", len(data))
	}
	if len(data) == 0 {
		return "<empty>"
	}
	return oneLine(string(data))
}
