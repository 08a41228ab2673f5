package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestFormats(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, FormatAuto, "debug")
	if err != nil {
		t.Fatal(err)
	}
	l.Debug().Str("plugin", "x").Msg("hello")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("auto format on a non-terminal must be JSON: %q", buf.String())
	}
	if m["plugin"] != "x" || m["message"] != "hello" || m["level"] != "debug" || m["time"] == nil {
		t.Fatalf("fields: %v", m)
	}

	buf.Reset()
	l, _ = New(&buf, FormatConsole, "")
	l.Info().Msg("console line")
	l.Debug().Msg("hidden at the default level")
	if out := buf.String(); !strings.Contains(out, "console line") || strings.HasPrefix(out, "{") || strings.Contains(out, "hidden") {
		t.Fatalf("console output: %q", out)
	}

	if _, err := New(&buf, "xml", ""); err == nil || !strings.Contains(err.Error(), "console or json") {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := New(&buf, "", "loud"); err == nil || !strings.Contains(err.Error(), "trace, debug") {
		t.Fatalf("bad level: %v", err)
	}
}

// Every process stamps the same time format, and New changes no zerolog
// global (a plugin author's own setup is left alone).
func TestTimeFormatAndNoGlobals(t *testing.T) {
	before := zerolog.TimeFieldFormat
	var buf bytes.Buffer
	l, err := New(&buf, FormatJSON, "info")
	if err != nil {
		t.Fatal(err)
	}
	l.Info().Msg("x")
	if zerolog.TimeFieldFormat != before {
		t.Errorf("New changed zerolog.TimeFieldFormat to %q", zerolog.TimeFieldFormat)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	ts, _ := m["time"].(string)
	if _, err := time.Parse(TimeFormat, ts); err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("time %q is not %s in UTC: %v", ts, TimeFormat, err)
	}
	buf.Reset()
	l, _ = New(&buf, FormatConsole, "info")
	l.Info().Msg("y")
	if fields := strings.Fields(buf.String()); len(fields) == 0 || len(fields[0]) != len(ConsoleTimeFormat) {
		t.Errorf("console line %q does not start with a %s time", buf.String(), ConsoleTimeFormat)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                        "nats://127.0.0.1:4222",
		"nats://alice:s3cret@host:4222":                "nats://alice:xxxxx@host:4222",
		"nats://tok3n@host:4222":                       "nats://xxxxx@host:4222",
		"nats://a:b@h1:4222,nats://h2:4222":            "nats://a:xxxxx@h1:4222,nats://h2:4222",
		"tls://user:pa%40ss@nats.example.com:4222/x?y": "tls://user:xxxxx@nats.example.com:4222/x?y",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
