package supervisor

import (
	"bytes"
	"encoding/json"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// MaxLineBytes bounds one log line of a child, without its newline. The
// first MaxLineBytes bytes of a longer line are passed on as a Line with
// Truncated set, as raw text (a cut JSON object is not JSON any more); the
// rest of it, up to the next newline, is dropped.
const MaxLineBytes = 64 << 10

// Levels of lines that are not zerolog JSON. Plain stderr lines are warn,
// not error: Go runtime panics, the standard log package and many tools
// write there, and most of those lines are not errors on their own, but
// they deserve more attention than stdout chatter.
const (
	PlainStdoutLevel = zerolog.InfoLevel
	PlainStderrLevel = zerolog.WarnLevel
)

// Keys of a zerolog JSON line (zerolog's defaults, which a child uses).
const (
	jsonLevelKey   = "level"
	jsonTimeKey    = "time"
	jsonMessageKey = "message"
)

// Stream names the output a Line came from.
type Stream string

// The streams of a child.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Line is one line of a child's stdout or stderr.
type Line struct {
	Stream Stream
	// Time is when the supervisor read the line. (A zerolog child's own
	// timestamp stays in Raw.)
	Time time.Time
	// Level is the line's "level" for zerolog JSON, PlainStdoutLevel or
	// PlainStderrLevel otherwise.
	Level zerolog.Level
	// Message is the "message" of zerolog JSON, the whole text otherwise.
	Message string
	// Fields holds the other fields of zerolog JSON (numbers as
	// json.Number, to keep them exact); nil for any other line.
	Fields map[string]any
	// Raw is the line as the child wrote it, without the newline.
	Raw string
	// Truncated says the line was longer than MaxLineBytes and was cut.
	Truncated bool
}

// parseLine makes the Line for one line of text.
func parseLine(stream Stream, raw []byte, truncated bool, now time.Time) Line {
	l := Line{Stream: stream, Time: now, Level: PlainStdoutLevel, Message: string(raw), Raw: string(raw), Truncated: truncated}
	if stream == Stderr {
		l.Level = PlainStderrLevel
	}
	if truncated {
		return l
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return l
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || dec.Decode(&struct{}{}) != io.EOF {
		return l
	}
	lv, ok := m[jsonLevelKey].(string)
	if !ok || lv == "" {
		return l
	}
	level, err := zerolog.ParseLevel(lv)
	if err != nil {
		return l
	}
	l.Level = level
	l.Message = ""
	if msg, ok := m[jsonMessageKey].(string); ok {
		l.Message = msg
		delete(m, jsonMessageKey)
	}
	delete(m, jsonLevelKey)
	delete(m, jsonTimeKey)
	l.Fields = m
	return l
}

// lineWriter splits what a child writes to one stream into lines. os/exec
// calls Write from one goroutine per stream; Flush is called after Wait.
type lineWriter struct {
	stream     Stream
	now        func() time.Time
	emit       func(Line)
	buf        []byte
	discarding bool // in the rest of a line that was cut
}

var _ io.Writer = (*lineWriter)(nil)

// Write passes every complete line of p on; it never fails.
func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if !w.discarding {
			if len(w.buf)+len(seg) > MaxLineBytes {
				w.buf = append(w.buf, seg[:MaxLineBytes-len(w.buf)]...)
				w.line(true)
				w.discarding = true
			} else {
				w.buf = append(w.buf, seg...)
			}
		}
		if i < 0 {
			break
		}
		if !w.discarding {
			w.line(false)
		}
		w.discarding = false
		p = p[i+1:]
	}
	return n, nil
}

// Flush passes on a last line that had no newline.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 && !w.discarding {
		w.line(false)
	}
	w.buf = w.buf[:0]
	w.discarding = false
}

func (w *lineWriter) line(truncated bool) {
	raw := bytes.TrimSuffix(w.buf, []byte("\r"))
	w.emit(parseLine(w.stream, raw, truncated, w.now()))
	w.buf = w.buf[:0]
}
