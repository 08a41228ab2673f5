package supervisor

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestRelog(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.DebugLevel)
	relog := Relog(log, "echo", "7", "host-a")
	relog(parseLine(Stderr, []byte(`{"level":"error","plugin":"spoofed","n":12345678901234567890,"obj":{"a":[1,2]},"message":"boom"}`), false, time.Now()))
	relog(parseLine(Stdout, []byte(`plain text`), false, time.Now()))
	relog(parseLine(Stdout, []byte(`{"level":"trace","message":"below the level"}`), false, time.Now()))
	relog(Line{Stream: Stdout, Level: PlainStdoutLevel, Message: "cut", Raw: "cut", Truncated: true})

	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	var got []map[string]any
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	first := got[0]
	if first["level"] != "error" || first["message"] != "boom" || first[FieldPlugin] != "echo" || first[FieldInstance] != "7" ||
		first[FieldHost] != "host-a" || first[FieldStream] != "stderr" || first["n"] != json.Number("12345678901234567890") {
		t.Fatalf("json line: %v", first)
	}
	if obj, _ := first["obj"].(map[string]any); len(obj) != 1 {
		t.Fatalf("nested field: %v", first)
	}
	if second := got[1]; second["level"] != "info" || second["message"] != "plain text" || second[FieldStream] != "stdout" {
		t.Fatalf("plain line: %v", second)
	}
	if third := got[2]; third[FieldTruncated] != true || third["message"] != "cut" {
		t.Fatalf("cut line: %v", third)
	}
}
