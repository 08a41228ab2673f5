package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
