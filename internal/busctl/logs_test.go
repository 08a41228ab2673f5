package busctl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// logStream creates PLUGBUS_LOGS as the broker does.
func (b *bus) logStream(t *testing.T) jetstream.Stream {
	t.Helper()
	return b.createStream(t, schemas.StreamLogs, wire.LogsSubject("plugbus", "*", "*"))
}

// publishLog publishes body on the log subject of host, plugin and
// instance, and returns when the stream stored it. Each message is stored
// strictly later than the one before, so --since can cut between them.
func (b *bus) publishLog(t *testing.T, host, plugin, instance string, body []byte) time.Time {
	t.Helper()
	ack, err := b.js.Publish(context.Background(), wire.LogSubject("plugbus", host, plugin, instance), body)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.js.Stream(context.Background(), ack.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the clock to pass the stored time", func() bool { return time.Now().After(m.Time) })
	return m.Time
}

// logRecord is a LogRecord as hostd publishes it, written at when + sec.
func logRecord(t *testing.T, host, plugin, instance, level, msg string, sec int, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(schemas.LogRecord{Time: when.Add(time.Duration(sec) * time.Second), Level: level, Message: msg,
		Fields: fields, Stream: "stderr", Host: host, Plugin: plugin, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedLogs publishes, at stream sequences 1..8: incrementer lines of hosts
// h1 and h2, a line of another plugin (2), a message that is not JSON (4),
// a truncated line (5), hostd's line about dropped lines (6) and JSON that
// is not a log record (8). It returns the stored time of each sequence.
func seedLogs(t *testing.T, b *bus) map[int]time.Time {
	t.Helper()
	b.logStream(t)
	stored := map[int]time.Time{}
	stored[1] = b.publishLog(t, "h1", "incrementer", "0",
		logRecord(t, "h1", "incrementer", "0", "info", "listening", 1, map[string]any{"version": "1.0.0", "step": 2}))
	stored[2] = b.publishLog(t, "h1", "job-policy", "0", logRecord(t, "h1", "job-policy", "0", "info", "other plugin", 2, nil))
	stored[3] = b.publishLog(t, "h2", "incrementer", "0",
		logRecord(t, "h2", "incrementer", "0", "warn", "slow call", 3, map[string]any{"took": "1.5s", "note": "a b", "empty": ""}))
	stored[4] = b.publishLog(t, "h2", "incrementer", "0", []byte("plain text,\nnot a record"))
	truncated, _ := json.Marshal(schemas.LogRecord{Time: when.Add(5 * time.Second), Level: "error", Message: "boom",
		Fields: map[string]any{"error": "x=1", "ids": []int{1, 2}, "big": json.Number("12345678901234567890")},
		Stream: "stderr", Host: "h1", Plugin: "incrementer", Instance: "1", Truncated: true})
	stored[5] = b.publishLog(t, "h1", "incrementer", "1", truncated)
	dropped, _ := json.Marshal(schemas.LogRecord{Time: when.Add(6 * time.Second), Level: "warn",
		Message: "hostd dropped 12 log lines over the rate limit of 50 lines/s", Stream: "stderr",
		Host: "h1", Plugin: "incrementer", Instance: "0", Dropped: 12})
	stored[6] = b.publishLog(t, "h1", "incrementer", "0", dropped)
	stored[7] = b.publishLog(t, "h2", "incrementer", "0", logRecord(t, "h2", "incrementer", "0", "info", "done", 7, nil))
	stored[8] = b.publishLog(t, "h1", "incrementer", "0", []byte(`{"msg": "hi"}`))
	return stored
}

func TestPluginsLogs(t *testing.T) {
	b := startBus(t)
	stored := seedLogs(t, b)
	at := func(seq int) string { return stored[seq].UTC().Format("2006-01-02T15:04:05.000Z07:00") }
	lines := map[int]string{
		1: "2025-05-01T12:00:01.000Z  h1/0  INFO   listening  step=2 version=1.0.0",
		3: `2025-05-01T12:00:03.000Z  h2/0  WARN   slow call  empty="" note="a b" took=1.5s`,
		4: at(4) + "  h2/0  RAW    plain text, not a record",
		5: `2025-05-01T12:00:05.000Z  h1/1  ERROR  boom (truncated)  big=12345678901234567890 error="x=1" ids=[1,2]`,
		6: "2025-05-01T12:00:06.000Z  h1/0  WARN   hostd dropped 12 log lines over the rate limit of 50 lines/s  dropped=12",
		7: "2025-05-01T12:00:07.000Z  h2/0  INFO   done",
		8: at(8) + `  h1/0  RAW    {"msg": "hi"}`,
	}
	want := func(seqs ...int) string {
		var s strings.Builder
		for _, seq := range seqs {
			s.WriteString(lines[seq] + "\n")
		}
		return s.String()
	}
	since := func(seq int) string { return stored[seq].UTC().Format(time.RFC3339Nano) }

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"default: every host, oldest first", nil, want(1, 3, 4, 5, 6, 7, 8)},
		{"one host", []string{"--host", "h1"}, want(1, 5, 6, 8)},
		{"the other host", []string{"--host", "h2"}, want(3, 4, 7)},
		{"last 2", []string{"-n", "2"}, want(7, 8)},
		{"last 1 of a host", []string{"--host", "h2", "--count", "1"}, want(7)},
		{"count 0", []string{"-n", "0"}, ""},
		{"since a time: everything since", []string{"--since", since(5)}, want(5, 6, 7, 8)},
		{"since a time, fewer than --count", []string{"--since", since(5), "-n", "10"}, want(5, 6, 7, 8)},
		{"since a time, the last --count of them", []string{"--since", since(5), "-n", "2"}, want(7, 8)},
		{"since a time, one host", []string{"--since", since(4), "--host", "h2"}, want(4, 7)},
		{"since a duration", []string{"--since", "1h"}, want(1, 3, 4, 5, 6, 7, 8)},
		{"since a time to come", []string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, ""},
		{"a plugin with no lines", []string{"--host", "h3"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := b.mustRun(t, append([]string{"plugins", "logs", "incrementer"}, tt.args...)...)
			if out != tt.want {
				t.Errorf("plugins logs =\n%s\nwant\n%s", out, tt.want)
			}
		})
	}

	t.Run("json: one log record per line, the rest on stderr", func(t *testing.T) {
		r := b.busctl(t, "plugins", "logs", "incrementer", "-o", "json")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var got []string
		sc := bufio.NewScanner(strings.NewReader(r.stdout))
		for sc.Scan() {
			var rec schemas.LogRecord
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("line %q is not a log record: %v", sc.Text(), err)
			}
			if err := schemas.Validate(schemas.APILogRecord, sc.Bytes()); err != nil {
				t.Errorf("line %q fails the log record schema: %v", sc.Text(), err)
			}
			got = append(got, fmt.Sprintf("%s/%s %s", rec.Host, rec.Instance, rec.Message))
		}
		if w := "h1/0 listening,h2/0 slow call,h1/1 boom,h1/0 hostd dropped 12 log lines over the rate limit of 50 lines/s,h2/0 done"; strings.Join(got, ",") != w {
			t.Errorf("records = %s\nwant %s", strings.Join(got, ","), w)
		}
		if !strings.Contains(r.stdout, `"dropped":12`) || !strings.Contains(r.stdout, `"truncated":true`) {
			t.Errorf("records lost fields:\n%s", r.stdout)
		}
		wantErr := "not a log record at stream seq 4 (subject plugbus.log.h2.incrementer.0; the body is not valid JSON: " +
			"invalid character 'p' looking for beginning of value): plain text, not a record\n" +
			`not a log record at stream seq 8 (subject plugbus.log.h1.incrementer.0; field "time": is required): {"msg": "hi"}` + "\n"
		if r.stderr != wantErr {
			t.Errorf("stderr =\n%s\nwant\n%s", r.stderr, wantErr)
		}
	})

	t.Run("leaves no consumer behind", func(t *testing.T) {
		s, err := b.js.Stream(context.Background(), schemas.StreamLogs)
		if err != nil {
			t.Fatal(err)
		}
		if info, _ := s.Info(context.Background()); info.State.Consumers != 0 {
			t.Errorf("%d consumers left on the stream", info.State.Consumers)
		}
	})
}

// TestPluginsLogsCount: without --since the last 20 lines; with --since
// every line since, unless --count bounds it.
func TestPluginsLogsCount(t *testing.T) {
	b := startBus(t)
	b.logStream(t)
	for i := 1; i <= 25; i++ {
		b.publishLog(t, "h1", "incrementer", "0", logRecord(t, "h1", "incrementer", "0", "info", fmt.Sprintf("line %d", i), i, nil))
	}
	messages := func(out string) string {
		var got []string
		for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			if l != "" {
				got = append(got, strings.TrimPrefix(strings.SplitN(l, "INFO   ", 2)[1], "line "))
			}
		}
		return strings.Join(got, ",")
	}
	seq := func(from, to int) string {
		var s []string
		for i := from; i <= to; i++ {
			s = append(s, fmt.Sprint(i))
		}
		return strings.Join(s, ",")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, seq(6, 25)},
		{[]string{"--since", "1h"}, seq(1, 25)},
		{[]string{"--since", "1h", "-n", "3"}, seq(23, 25)},
		{[]string{"--since", "1h", "-n", "30"}, seq(1, 25)},
		{[]string{"-n", "30"}, seq(1, 25)},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if got := messages(b.mustRun(t, append([]string{"plugins", "logs", "incrementer"}, tt.args...)...)); got != tt.want {
				t.Errorf("lines %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPluginsLogsFollow(t *testing.T) {
	b := startBus(t)
	b.logStream(t)
	b.publishLog(t, "h1", "incrementer", "0", logRecord(t, "h1", "incrementer", "0", "info", "old", 1, nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- busctl.Execute(ctx, []string{"-s", b.url, "plugins", "logs", "incrementer", "-f", "--host", "h1"}, &out, &errOut)
	}()
	waitFor(t, "the old line", func() bool { return strings.Contains(out.String(), "old") })
	b.publishLog(t, "h2", "incrementer", "0", logRecord(t, "h2", "incrementer", "0", "info", "other host", 2, nil))
	b.publishLog(t, "h1", "incrementer", "12", logRecord(t, "h1", "incrementer", "12", "warn", "new", 3, map[string]any{"k": "v"}))
	waitFor(t, "the new line", func() bool { return strings.Contains(out.String(), "new") })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after Ctrl-C, stderr:\n%s", code, errOut.String())
	}
	// The line that came later is padded to the widths of the first batch.
	want := "2025-05-01T12:00:01.000Z  h1/0  INFO   old\n" +
		"2025-05-01T12:00:03.000Z  h1/12  WARN   new  k=v\n"
	if out.String() != want {
		t.Errorf("output =\n%s\nwant\n%s", out.String(), want)
	}
	s, err := b.js.Stream(context.Background(), schemas.StreamLogs)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Info(context.Background()); info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the stream", info.State.Consumers)
	}
}

func TestPluginsLogsNoBroker(t *testing.T) {
	b := startBus(t)
	r := b.busctl(t, "--timeout", "1s", "plugins", "logs", "incrementer")
	if r.code != busctl.ExitError {
		t.Errorf("exit %d, want %d", r.code, busctl.ExitError)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 2 || lines[0] != "error: no_responders: nothing answers on plugbus.api.streams.read: is the broker (or plugin) running and connected to this NATS server?" ||
		!strings.HasPrefix(lines[1], "hint: start the broker with `make run`") {
		t.Errorf("stderr =\n%s", r.stderr)
	}
}
