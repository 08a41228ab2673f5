package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/broker"
)

// Target says what a metric must reach.
type Target struct {
	// Kind is "ratio_min" (bus/raw must be at least Value), "ratio_max"
	// (bus/raw must be at most Value) or "bus_max" (the bus figure must be
	// at most Value, in the metric's unit).
	Kind  string  `json:"kind"`
	Value float64 `json:"value"`
}

func (t *Target) String() string {
	if t == nil {
		return ""
	}
	switch t.Kind {
	case "ratio_min":
		return fmt.Sprintf(">= %.2fx raw", t.Value)
	case "ratio_max":
		return fmt.Sprintf("<= %.2fx raw", t.Value)
	case "bus_max":
		return fmt.Sprintf("<= %s", fmtNum(t.Value))
	}
	return ""
}

// Metric accumulates the per-repetition values of one figure.
type Metric struct {
	Case           string
	Name           string
	Unit           string
	HigherIsBetter bool
	Target         *Target
	Note           string
	raw, bus       []float64
}

// AddRaw records one repetition of the raw NATS figure.
func (m *Metric) AddRaw(v float64) { m.raw = append(m.raw, v) }

// AddBus records one repetition of the plugbus figure.
func (m *Metric) AddBus(v float64) { m.bus = append(m.bus, v) }

// Record is one line of the results: the median of the repetitions of the
// raw and the plugbus figure, their ratio (bus/raw, read with
// higher_is_better) and the spread of the bus figure.
type Record struct {
	Case           string   `json:"case"`
	Name           string   `json:"name"`
	Unit           string   `json:"unit"`
	Raw            *float64 `json:"raw"`
	Bus            *float64 `json:"bus"`
	Ratio          *float64 `json:"ratio"`
	HigherIsBetter bool     `json:"higher_is_better"`
	Runs           int      `json:"runs"`
	// Min and Max are the extremes of the bus figure's repetitions.
	Min *float64 `json:"min"`
	Max *float64 `json:"max"`
	// RawMin and RawMax are the extremes of the raw figure's repetitions.
	RawMin *float64 `json:"raw_min,omitempty"`
	RawMax *float64 `json:"raw_max,omitempty"`
	Target *Target  `json:"target,omitempty"`
	// Pass tells whether the median meets Target (absent without one).
	Pass *bool  `json:"pass,omitempty"`
	Note string `json:"note,omitempty"`
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// Record aggregates the repetitions.
func (m *Metric) Record() Record {
	r := Record{Case: m.Case, Name: m.Name, Unit: m.Unit, HigherIsBetter: m.HigherIsBetter,
		Runs: max(len(m.bus), len(m.raw)), Target: m.Target, Note: m.Note}
	if len(m.bus) > 0 {
		r.Bus = ptr(median(m.bus))
		lo, hi := minMax(m.bus)
		r.Min, r.Max = ptr(lo), ptr(hi)
	}
	if len(m.raw) > 0 {
		r.Raw = ptr(median(m.raw))
		lo, hi := minMax(m.raw)
		r.RawMin, r.RawMax = ptr(lo), ptr(hi)
	}
	if r.Raw != nil && r.Bus != nil && *r.Raw != 0 {
		r.Ratio = ptr(*r.Bus / *r.Raw)
	}
	if m.Target != nil {
		var ok bool
		switch {
		case m.Target.Kind == "ratio_min" && r.Ratio != nil:
			ok = *r.Ratio >= m.Target.Value
			r.Pass = &ok
		case m.Target.Kind == "ratio_max" && r.Ratio != nil:
			ok = *r.Ratio <= m.Target.Value
			r.Pass = &ok
		case m.Target.Kind == "bus_max" && r.Bus != nil:
			ok = *r.Bus <= m.Target.Value
			r.Pass = &ok
		}
	}
	return r
}

// Machine describes where the benchmark ran.
type Machine struct {
	Hostname   string  `json:"hostname"`
	OS         string  `json:"os"`
	Arch       string  `json:"arch"`
	Kernel     string  `json:"kernel"`
	CPUModel   string  `json:"cpu_model"`
	NumCPU     int     `json:"num_cpu"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	MemTotalMB int     `json:"mem_total_mb"`
	LoadAvg    string  `json:"load_avg_at_start"`
	LoadAvgEnd string  `json:"load_avg_at_end,omitempty"`
	Container  bool    `json:"container,omitempty"`
	CPUQuota   float64 `json:"cpu_quota,omitempty"`
}

// Versions are the versions of what was measured.
type Versions struct {
	Go         string `json:"go"`
	NATSServer string `json:"nats_server"`
	NATSGo     string `json:"nats_go"`
	Broker     string `json:"broker"`
	Commit     string `json:"commit,omitempty"`
	Dirty      bool   `json:"dirty,omitempty"`
}

// Report is the whole result file.
type Report struct {
	StartedAt time.Time `json:"started_at"`
	Duration  string    `json:"duration"`
	Mode      string    `json:"mode"`
	Runs      int       `json:"runs"`
	Machine   Machine   `json:"machine"`
	Versions  Versions  `json:"versions"`
	// Setup says how the bus and the raw side were wired.
	Setup   map[string]string `json:"setup"`
	Records []Record          `json:"records"`
	// Skipped lists cases or figures that could not run, with the reason.
	Skipped []string `json:"skipped,omitempty"`
	// Baseline names what the raw column is when it is not raw NATS alone
	// (bench/peers: go-plugin in its rows).
	Baseline string `json:"baseline,omitempty"`
}

// ReadReport reads a results file written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteJSON writes the report to path, creating its directory.
func (r *Report) WriteJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func fmtPtr(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmtNum(*v)
}

// WriteTable prints the records as an aligned table.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tname\tunit\traw\tbus\tbus/raw\tbus min..max\ttarget\tok\t")
	for _, rec := range r.Records {
		ratio := "-"
		if rec.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *rec.Ratio)
		}
		ok := ""
		if rec.Pass != nil {
			ok = "yes"
			if !*rec.Pass {
				ok = "NO"
			}
		}
		better := "↓"
		if rec.HigherIsBetter {
			better = "↑"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s..%s\t%s\t%s\t\n", rec.Case, rec.Name, rec.Unit, better,
			fmtPtr(rec.Raw), fmtPtr(rec.Bus), ratio, fmtPtr(rec.Min), fmtPtr(rec.Max), rec.Target.String(), ok)
	}
	_ = tw.Flush()
}

// WriteMarkdown prints the records as a Markdown table (for docs/performance.md).
func (r *Report) WriteMarkdown(w io.Writer) {
	base := r.Baseline
	if base == "" {
		base = "raw NATS"
	}
	fmt.Fprintf(w, "| case | figure | unit | %s | plugbus | bus/raw | plugbus min..max | target | met |\n", base)
	fmt.Fprintln(w, "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
	for _, rec := range r.Records {
		ratio := "-"
		if rec.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *rec.Ratio)
		}
		ok := ""
		if rec.Pass != nil {
			ok = "yes"
			if !*rec.Pass {
				ok = "**no**"
			}
		}
		better := "lower is better"
		if rec.HigherIsBetter {
			better = "higher is better"
		}
		fmt.Fprintf(w, "| %s | %s | %s (%s) | %s | %s | %s | %s..%s | %s | %s |\n", rec.Case, rec.Name, rec.Unit, better,
			fmtPtr(rec.Raw), fmtPtr(rec.Bus), ratio, fmtPtr(rec.Min), fmtPtr(rec.Max), rec.Target.String(), ok)
	}
}

// machineInfo reads the machine description from /proc where it can.
func machineInfo() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.Atoi(f[1])
				m.MemTotalMB = kb / 1024
			}
		}
	}
	m.LoadAvg = loadAvg()
	if b, err := os.ReadFile("/sys/fs/cgroup/cpu.max"); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 && f[0] != "max" {
			q, _ := strconv.ParseFloat(f[0], 64)
			p, _ := strconv.ParseFloat(f[1], 64)
			if p > 0 {
				m.CPUQuota = q / p
			}
		}
	}
	if _, err := os.Stat("/.dockerenv"); err == nil {
		m.Container = true
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func versions() Versions {
	v := Versions{Go: runtime.Version(), NATSServer: server.VERSION, NATSGo: nats.Version, Broker: broker.Version}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		v.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			v.Dirty = len(strings.TrimSpace(string(st))) > 0
		}
	}
	return v
}

// Markers delimiting the generated parts of docs/performance.md: busbench's
// table and bench/peers' (peerbench).
const (
	DocTableStart = "<!-- busbench:table:start -->"
	DocTableEnd   = "<!-- busbench:table:end -->"
	DocPeersStart = "<!-- busbench:peers:start -->"
	DocPeersEnd   = "<!-- busbench:peers:end -->"
)

// WriteDocSection writes the generated part of docs/performance.md: the
// machine, the versions and the table.
func (r *Report) WriteDocSection(w io.Writer) {
	m, v := r.Machine, r.Versions
	fmt.Fprintf(w, "Run of %s (%s mode, %d runs per figure, %s). Machine: %d × %s, %d MiB RAM, Linux %s",
		r.StartedAt.Format("2006-01-02 15:04 UTC"), r.Mode, r.Runs, r.Duration, m.NumCPU, m.CPUModel, m.MemTotalMB, m.Kernel)
	if m.Container {
		fmt.Fprint(w, " (container/VM)")
	}
	fmt.Fprintf(w, ", load average %s at the start and %s at the end. Go %s, nats-server %s, nats.go %s, broker %s",
		m.LoadAvg, m.LoadAvgEnd, strings.TrimPrefix(v.Go, "go"), v.NATSServer, v.NATSGo, v.Broker)
	if v.Commit != "" {
		fmt.Fprintf(w, ", commit %s", v.Commit)
		if v.Dirty {
			fmt.Fprint(w, " with uncommitted changes")
		}
	}
	fmt.Fprint(w, ".\n\n")
	r.WriteMarkdown(w)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "\nSkipped: %s\n", s)
	}
}

// UpdateDoc replaces the generated part of the Markdown file at path (the
// lines between DocTableStart and DocTableEnd) with this report.
func (r *Report) UpdateDoc(path string) error {
	return r.UpdateDocBetween(path, DocTableStart, DocTableEnd)
}

// UpdateDocBetween replaces the lines between the markers start and end of
// the Markdown file at path with this report.
func (r *Report) UpdateDocBetween(path, start, end string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, start), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s section", path, start, end)
	}
	var sb strings.Builder
	sb.WriteString(s[:i+len(start)])
	sb.WriteString("\n")
	r.WriteDocSection(&sb)
	sb.WriteString(s[j:])
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
