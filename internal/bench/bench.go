// Package bench measures plugbus against raw NATS JetStream doing the same
// job on the same server: event publishing, delivery to a plugin, end-to-end
// latency, request/reply and hook chains, API ingress, and scale (1,000
// plugins, 100-way fan-out, broker memory). cmd/busbench runs it; `make
// bench` writes bench/results/latest.json and docs/performance.md explains
// the numbers.
//
// Every figure is measured Runs times, raw and bus alternating, and
// reported as the median with the extremes. Every loop is bounded by a
// count or a duration.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// Sides of a measurement.
const (
	SideBoth = "both"
	SideRaw  = "raw"
	SideBus  = "bus"
)

// Config says what to run.
type Config struct {
	// Quick runs small sizes and short durations (make bench-quick).
	Quick bool
	// Runs is how many times each figure is measured (at least 1; 3 by default).
	Runs int
	// Cases lists the cases to run by name (all when empty).
	Cases []string
	// Side runs only the raw or only the bus side (for profiling).
	Side string
	// ProfileDir, when set, receives one CPU profile per case.
	ProfileDir string
	// BrokerBin is the broker binary the scale case runs as a child process.
	BrokerBin string
	// Self is this program's executable, run as a bare nats-server child.
	Self string
	// Rate is the offered rate of the latency case (events/s).
	Rate int
	// Log receives progress lines.
	Log io.Writer
	// Peers are other plugin systems the topology case measures beside
	// plugbus in the same run (bench/peers: hashicorp/go-plugin).
	Peers []Peer
}

// caseDef is one benchmark case.
type caseDef struct {
	name  string
	title string
	run   func(ctx context.Context, r *runner) error
}

// Cases lists the case names in the order they run.
func Cases() []string {
	out := make([]string, 0, len(cases))
	for _, c := range cases {
		out = append(out, c.name)
	}
	return out
}

var cases = []caseDef{
	{"publish", "1. event publish throughput", runPublish},
	{"deliver", "2. delivery throughput", runDeliver},
	{"latency", "3. end-to-end latency", runLatency},
	{"rr", "4. request/reply and hook chains", runRR},
	{"ingress", "5. API ingress", runIngress},
	{"scale", "6. scale", runScale},
	{"topology", "7. the real topology: plugins as processes", runTopology},
}

// runner carries the state of one benchmark run.
type runner struct {
	cfg     Config
	cur     string
	metrics []*Metric
	byName  map[string]*Metric
	skipped []string
	setup   map[string]string
}

// metric returns the metric called name of the current case, creating it.
func (r *runner) metric(name, unit string, higherIsBetter bool, target *Target) *Metric {
	return r.metricIn(r.cur, name, unit, higherIsBetter, target)
}

// metricIn returns the metric called name of case c, creating it.
func (r *runner) metricIn(c, name, unit string, higherIsBetter bool, target *Target) *Metric {
	key := c + "/" + name
	if m, ok := r.byName[key]; ok {
		return m
	}
	m := &Metric{Case: c, Name: name, Unit: unit, HigherIsBetter: higherIsBetter, Target: target}
	r.byName[key] = m
	r.metrics = append(r.metrics, m)
	return m
}

func (r *runner) raw() bool { return r.cfg.Side != SideBus }
func (r *runner) bus() bool { return r.cfg.Side != SideRaw }

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "  "+format+"\n", args...)
	}
}

func (r *runner) skip(format string, args ...any) {
	msg := r.cur + ": " + fmt.Sprintf(format, args...)
	r.skipped = append(r.skipped, msg)
	r.logf("skipped: %s", msg)
}

// pick returns the quick or the full value.
func (r *runner) pick(quick, full int) int {
	if r.cfg.Quick {
		return quick
	}
	return full
}

func (r *runner) dur(quick, full time.Duration) time.Duration {
	if r.cfg.Quick {
		return quick
	}
	return full
}

// Run runs the configured cases and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Runs < 1 {
		cfg.Runs = 3
	}
	if cfg.Side == "" {
		cfg.Side = SideBoth
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 5000
	}
	for _, name := range cfg.Cases {
		if !slices.Contains(Cases(), name) {
			return nil, fmt.Errorf("unknown case %q (cases: %s)", name, strings.Join(Cases(), ", "))
		}
	}
	r := &runner{cfg: cfg, byName: map[string]*Metric{}, setup: map[string]string{}}
	mode := "full"
	if cfg.Quick {
		mode = "quick"
	}
	rep := &Report{StartedAt: time.Now().UTC(), Mode: mode, Runs: cfg.Runs, Machine: machineInfo(), Versions: versions()}
	start := time.Now()
	for _, c := range cases {
		if len(cfg.Cases) > 0 && !slices.Contains(cfg.Cases, c.name) {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.cur = c.name
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "%s (%s)\n", c.title, c.name)
		}
		cstart := time.Now()
		stopProf, err := startProfile(cfg.ProfileDir, c.name)
		if err != nil {
			return nil, err
		}
		err = c.run(ctx, r)
		stopProf()
		runtime.GC()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.skip("failed: %v", err)
		}
		r.logf("done in %s", time.Since(cstart).Round(time.Millisecond))
	}
	for _, m := range r.metrics {
		rep.Records = append(rep.Records, m.Record())
	}
	rep.Skipped = r.skipped
	rep.Setup = r.setup
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	rep.Machine.LoadAvgEnd = loadAvg()
	return rep, nil
}

func startProfile(dir, name string) (func(), error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
