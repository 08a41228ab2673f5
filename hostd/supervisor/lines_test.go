package supervisor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// collect writes chunks to a lineWriter, flushes it and returns the lines.
func collect(stream Stream, chunks ...[]byte) []Line {
	var got []Line
	w := &lineWriter{stream: stream, now: time.Now, emit: func(l Line) { got = append(got, l) }}
	for _, c := range chunks {
		if n, err := w.Write(c); n != len(c) || err != nil {
			panic("short write")
		}
	}
	w.Flush()
	return got
}

func raws(lines []Line) []string {
	var r []string
	for _, l := range lines {
		r = append(r, l.Raw)
	}
	return r
}

func TestLineWriterSplits(t *testing.T) {
	got := raws(collect(Stdout, []byte("a\nb"), []byte("c\r\n\n"), []byte("d")))
	if want := []string{"a", "bc", "", "d"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", got, want)
	}
}

func TestLineWriterBound(t *testing.T) {
	exact := bytes.Repeat([]byte("a"), MaxLineBytes)
	lines := collect(Stderr, exact, []byte("\n"), bytes.Repeat([]byte("b"), MaxLineBytes+1), []byte("bbb\nnext\n"),
		bytes.Repeat([]byte("c"), 3*MaxLineBytes)) // cut, and no newline before the end
	if len(lines) != 4 {
		t.Fatalf("%d lines: %q", len(lines), raws(lines))
	}
	if lines[0].Truncated || len(lines[0].Raw) != MaxLineBytes {
		t.Fatalf("a line of exactly MaxLineBytes is whole: truncated %v len %d", lines[0].Truncated, len(lines[0].Raw))
	}
	if !lines[1].Truncated || lines[1].Raw != strings.Repeat("b", MaxLineBytes) {
		t.Fatalf("long line: truncated %v len %d", lines[1].Truncated, len(lines[1].Raw))
	}
	if lines[2].Raw != "next" || lines[2].Truncated {
		t.Fatalf("after the cut: %+v", lines[2])
	}
	if !lines[3].Truncated || len(lines[3].Raw) != MaxLineBytes {
		t.Fatalf("long partial line: truncated %v len %d", lines[3].Truncated, len(lines[3].Raw))
	}
	// A cut JSON line is raw text.
	long := `{"level":"error","message":"` + strings.Repeat("m", MaxLineBytes) + `"}`
	l := collect(Stdout, []byte(long+"\n"))[0]
	if !l.Truncated || l.Fields != nil || l.Level != PlainStdoutLevel {
		t.Fatalf("cut JSON: %+v", l.Level)
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream Stream
		raw    string
		level  zerolog.Level
		msg    string
		fields map[string]any // nil: not JSON
	}{
		{"zerolog", Stderr, `{"level":"debug","time":"2026-01-01T00:00:00Z","n":1.5,"s":"x","message":"hi"}`, zerolog.DebugLevel, "hi", map[string]any{"n": json.Number("1.5"), "s": "x"}},
		{"no message", Stdout, `{"level":"error","error":"boom"}`, zerolog.ErrorLevel, "", map[string]any{"error": "boom"}},
		{"spaces around", Stdout, `  {"level":"warn","message":"m"} `, zerolog.WarnLevel, "m", map[string]any{}},
		{"plain stdout", Stdout, "hello", PlainStdoutLevel, "hello", nil},
		{"plain stderr", Stderr, "panic: oops", PlainStderrLevel, "panic: oops", nil},
		{"json without level", Stdout, `{"message":"m"}`, PlainStdoutLevel, `{"message":"m"}`, nil},
		{"unknown level", Stderr, `{"level":"loud","message":"m"}`, PlainStderrLevel, `{"level":"loud","message":"m"}`, nil},
		{"level not a string", Stdout, `{"level":3}`, PlainStdoutLevel, `{"level":3}`, nil},
		{"trailing text", Stdout, `{"level":"info"} and more`, PlainStdoutLevel, `{"level":"info"} and more`, nil},
		{"two objects", Stdout, `{"level":"info"}{"level":"info"}`, PlainStdoutLevel, `{"level":"info"}{"level":"info"}`, nil},
		{"broken", Stdout, `{"level":"info"`, PlainStdoutLevel, `{"level":"info"`, nil},
		{"array", Stdout, `[1]`, PlainStdoutLevel, `[1]`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := parseLine(tc.stream, []byte(tc.raw), false, time.Now())
			if l.Level != tc.level || l.Message != tc.msg || l.Raw != tc.raw || l.Stream != tc.stream {
				t.Fatalf("line %+v", l)
			}
			if (tc.fields == nil) != (l.Fields == nil) || len(tc.fields) != len(l.Fields) {
				t.Fatalf("fields %#v, want %#v", l.Fields, tc.fields)
			}
			for k, v := range tc.fields {
				if l.Fields[k] != v {
					t.Fatalf("field %s: %#v, want %#v", k, l.Fields[k], v)
				}
			}
		})
	}
}

// However the output is cut into writes, the lines are the same, and none
// is longer than the bound.
func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("a\nb\r\n{\"level\":\"info\"}\npartial"), 3)
	f.Add(append(bytes.Repeat([]byte("x"), MaxLineBytes+10), "\ny"...), MaxLineBytes-1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		whole := collect(Stdout, data)
		split := collect(Stdout, data[:cut], data[cut:])
		if len(whole) != len(split) {
			t.Fatalf("%d lines whole, %d split", len(whole), len(split))
		}
		for i := range whole {
			if whole[i].Raw != split[i].Raw || whole[i].Truncated != split[i].Truncated || whole[i].Level != split[i].Level {
				t.Fatalf("line %d: %+v vs %+v", i, whole[i], split[i])
			}
			if len(whole[i].Raw) > MaxLineBytes {
				t.Fatalf("line %d has %d bytes", i, len(whole[i].Raw))
			}
		}
	})
}
