package faults

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	update      = flag.Bool("update", false, "rewrite the results table at the end of docs/reliability.md with this run's rows")
	resultsPath = flag.String("results", "", "write the results table as JSON to this file (default bin/faults-results.json in the module)")
)

// scenarios are the suite's scenarios, in the table's order; the doc must
// list each one.
var scenarios = []struct{ id, what string }{
	{"broker-kill", "kill -9 of the broker at 10%, 50% and 90% of an alert load, restarted on the same data dir and port"},
	{"plugin-kill", "kill -9 of notify-webhook mid-stream, restarted"},
	{"hung-hook-fail", "a hung alert.pre_notify gate (policy fail) under 300 concurrent alerts, unrelated traffic measured"},
	{"hung-hook-ignore", "the same with policy ignore"},
	{"malformed-events", "events that are not CloudEvents, or carry a wrong version, data, type or source"},
	{"bad-api-input", "API requests that are not JSON, have wrong types or unknown fields, or are too large"},
	{"failing-handler", "a webhook that always answers 500"},
	{"idempotency-window", "the same idempotency key inside and outside the broker's idempotency window"},
	{"second-broker", "a second broker started on the data dir of a running one"},
	{"sigterm-drain", "SIGTERM of the broker with requests in flight inside a slow hook, restarted"},
	{"chain-resume", "kill -9 of the broker while step 3 of a 5-step hook chain (5 plugin processes) runs, restarted: the chain resumes"},
	{"fuzz", "the Fuzz targets of the module, each for a bounded time"},
	{"soak", "a long run of alerts fired and resolved, the broker's RSS sampled"},
	{"cluster-node-restart", "three NATS nodes, two brokers, R3: a node killed and restarted every 20 s under 1,000 alerts/s for a minute"},
	{"cluster-quorum-loss", "two of three NATS nodes killed under load: requests and publishes fail with an answer, none succeeds; then back"},
	{"cluster-leader-paused", "the node leading the event stream frozen (SIGSTOP) under load until a new leader serves, then resumed"},
	{"cluster-broker-kill", "three brokers: the leading one killed with chains inside a hook; the others take over"},
}

var results = struct {
	sync.Mutex
	rows  map[string]Row
	start time.Time
}{rows: map[string]Row{}, start: time.Now()}

// record keeps a scenario's row for the table and logs it.
func record(t *testing.T, r Row) {
	t.Helper()
	known := false
	for _, s := range scenarios {
		known = known || s.id == r.Scenario
	}
	if !known {
		t.Fatalf("scenario %q is not in the scenarios list", r.Scenario)
	}
	results.Lock()
	results.rows[r.Scenario] = r
	results.Unlock()
	t.Logf("RESULT %s", tableRow(r))
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if err := writeResults(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		code = 1
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// writeResults writes this run's rows as JSON and, with -update, into
// docs/reliability.md.
func writeResults() error {
	results.Lock()
	defer results.Unlock()
	if len(results.rows) == 0 {
		return nil
	}
	var rows []Row
	for _, s := range scenarios {
		if r, ok := results.rows[s.id]; ok {
			rows = append(rows, r)
		}
	}
	out := struct {
		Started    time.Time `json:"started"`
		Seconds    float64   `json:"seconds"`
		CPUs       int       `json:"cpus"`
		GoVersion  string    `json:"go_version"`
		Rows       []Row     `json:"rows"`
		NotRunHere []string  `json:"not_run,omitempty"`
	}{Started: results.start.UTC(), Seconds: time.Since(results.start).Seconds(), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Rows: rows}
	for _, s := range scenarios {
		if _, ok := results.rows[s.id]; !ok {
			out.NotRunHere = append(out.NotRunHere, s.id)
		}
	}
	path := *resultsPath
	if path == "" {
		path = filepath.Join(repoRoot(), "bin", "faults-results.json")
	}
	body, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, append(body, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "faults: results table written to %s\n", path)
	if *update {
		return updateDoc(rows)
	}
	return nil
}

// The table is the end of docs/reliability.md, between these markers.
const (
	tableBegin = "<!-- fault-suite-table: begin (written by go test ./internal/faults -update) -->"
	tableEnd   = "<!-- fault-suite-table: end -->"
	tableHead  = "| scenario | offered | acknowledged | stored | delivered | lost | duplicated | unexpected | longest stall | notes |\n" +
		"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	// stallColumn is in the head of a table that has the longest stall
	// column (older tables had none).
	stallColumn = "| longest stall |"
)

func docPath() string { return filepath.Join(repoRoot(), "docs", "reliability.md") }

func cell(n *int) string {
	if n == nil {
		return "–"
	}
	return fmt.Sprint(*n)
}

func tableRow(r Row) string {
	notes := strings.ReplaceAll(r.Notes, "|", "\\|")
	if r.Seconds > 0 {
		notes += fmt.Sprintf(" (%.0f s)", r.Seconds)
	}
	stall := "–"
	if r.StallSeconds != nil {
		stall = fmt.Sprintf("%.1f s", *r.StallSeconds)
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", r.Scenario, cell(r.Offered), cell(r.Acknowledged), cell(r.Stored),
		cell(r.Delivered), cell(r.Lost), cell(r.Duplicated), cell(r.Unexpected), stall, notes)
}

// withStallCell adds an empty longest stall cell to a row of a table
// written before that column existed.
func withStallCell(line string) string {
	cells := strings.SplitN(line, "|", 10)
	if len(cells) < 10 {
		return line
	}
	return strings.Join(cells[:9], "|") + "| – |" + cells[9]
}

// docTable splits the doc into what precedes the table and the table's
// rows by scenario.
func docTable(doc string) (head string, rows map[string]string, err error) {
	i := strings.Index(doc, tableBegin)
	j := strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		return "", nil, fmt.Errorf("docs/reliability.md has no results table between %q and %q", tableBegin, tableEnd)
	}
	rows = map[string]string{}
	old := !strings.Contains(doc[i:j], stallColumn)
	for _, line := range strings.Split(doc[i+len(tableBegin):j], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 10 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		id := strings.TrimSpace(cells[1])
		if id == "scenario" || strings.HasPrefix(id, "---") {
			continue
		}
		if old {
			line = withStallCell(line)
		}
		rows[id] = line
	}
	if strings.TrimSpace(doc[j+len(tableEnd):]) != "" {
		return "", nil, fmt.Errorf("docs/reliability.md must end with the results table; found text after %q", tableEnd)
	}
	return doc[:i], rows, nil
}

// updateDoc rewrites the table with this run's rows, keeping the rows of
// scenarios this run did not run.
func updateDoc(rows []Row) error {
	raw, err := os.ReadFile(docPath())
	if err != nil {
		return err
	}
	head, old, err := docTable(string(raw))
	if err != nil {
		return err
	}
	for _, r := range rows {
		old[r.Scenario] = tableRow(r)
	}
	var b strings.Builder
	b.WriteString(head)
	b.WriteString(tableBegin + "\n\n")
	b.WriteString(tableHead + "\n")
	for _, s := range scenarios {
		if line, ok := old[s.id]; ok {
			b.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&b, "\nRows last written %s on %d CPUs (%s, %s/%s).\n\n%s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, tableEnd)
	if err := os.WriteFile(docPath(), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return updateClusterCopy(old)
}

// docs/scale-out.md shows the cluster scenarios' rows, copied from the
// reliability table between these markers.
const (
	clusterBegin = "<!-- cluster-faults-table: begin (copied from reliability.md by go test ./internal/faults -update) -->"
	clusterEnd   = "<!-- cluster-faults-table: end -->"
)

func scaleOutDocPath() string { return filepath.Join(repoRoot(), "docs", "scale-out.md") }

// clusterBlock is the copy of the cluster rows of rows.
func clusterBlock(rows map[string]string) string {
	var b strings.Builder
	b.WriteString(clusterBegin + "\n\n" + tableHead + "\n")
	for _, s := range scenarios {
		if line, ok := rows[s.id]; ok && strings.HasPrefix(s.id, "cluster-") {
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("\n" + clusterEnd)
	return b.String()
}

// updateClusterCopy writes the cluster rows into docs/scale-out.md.
func updateClusterCopy(rows map[string]string) error {
	raw, err := os.ReadFile(scaleOutDocPath())
	if err != nil {
		return err
	}
	doc := string(raw)
	i, j := strings.Index(doc, clusterBegin), strings.Index(doc, clusterEnd)
	if i < 0 || j < i {
		return fmt.Errorf("docs/scale-out.md has no cluster table between %q and %q", clusterBegin, clusterEnd)
	}
	doc = doc[:i] + clusterBlock(rows) + doc[j+len(clusterEnd):]
	return os.WriteFile(scaleOutDocPath(), []byte(doc), 0o644)
}

// docs/scale-out.md holds the cluster scenarios' rows as the reliability
// table has them.
func TestScaleOutDocTable(t *testing.T) {
	raw, err := os.ReadFile(docPath())
	if err != nil {
		t.Fatal(err)
	}
	_, rows, err := docTable(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	so, err := os.ReadFile(scaleOutDocPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(so), clusterBlock(rows)) {
		t.Errorf("docs/scale-out.md does not hold the cluster rows of docs/reliability.md's table between %q and %q (run go test ./internal/faults -run Cluster -update)", clusterBegin, clusterEnd)
	}
}

// docs/reliability.md ends with the results table; it lists every
// scenario, each with 0 lost and 0 unexpected.
func TestReliabilityDocTable(t *testing.T) {
	raw, err := os.ReadFile(docPath())
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	head, rows, err := docTable(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(head, "## How the fault suite works") {
		t.Error(`docs/reliability.md has no "## How the fault suite works" section before the table`)
	}
	for _, s := range scenarios {
		line, ok := rows[s.id]
		if !ok {
			t.Errorf("docs/reliability.md: no row for scenario %s (run go test ./internal/faults -update)", s.id)
			continue
		}
		cells := strings.Split(line, "|")
		lost, unexpected := strings.TrimSpace(cells[6]), strings.TrimSpace(cells[8])
		if lost != "0" || unexpected != "0" {
			t.Errorf("docs/reliability.md: scenario %s shows lost %q and unexpected %q, want 0 and 0", s.id, lost, unexpected)
		}
		if !strings.Contains(head, "`"+s.id+"`") {
			t.Errorf("docs/reliability.md does not describe scenario `%s` above the table", s.id)
		}
	}
	for id := range rows {
		found := false
		for _, s := range scenarios {
			found = found || s.id == id
		}
		if !found {
			t.Errorf("docs/reliability.md has a row for %q, which is no scenario of the suite", id)
		}
	}
}
