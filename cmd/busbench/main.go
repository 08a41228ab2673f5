// Command busbench measures plugbus against raw NATS JetStream doing the
// same job on the same server, prints a table of both with their ratio and
// writes the results as JSON (bench/results/latest.json by default). `make
// bench` runs it in full, `make bench-quick` with -quick; docs/performance.md
// explains the cases and the numbers.
//
//	busbench [-quick] [-runs 3] [-cases publish,deliver,...] [-out FILE]
//	         [-side both|raw|bus] [-profile DIR] [-broker-bin bin/broker]
//	         [-doc docs/performance.md] [-markdown]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/plugbus/plugbus/internal/bench"
)

func main() {
	if code, ok := bench.ChildMain(); ok {
		// A plugin process of the topology case, started by hostd's supervisor.
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == bench.ChildNATSArg {
		os.Exit(childNATS(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("busbench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes and short runs (about a minute)")
	runs := fs.Int("runs", 3, "repetitions of every figure (the median is reported)")
	casesFlag := fs.String("cases", "", "comma-separated cases to run: "+strings.Join(bench.Cases(), ",")+" (default all)")
	out := fs.String("out", "", "results file (default bench/results/latest.json, or bench/results/quick.json with -quick)")
	side := fs.String("side", bench.SideBoth, "measure both sides, or only raw or bus (for profiling)")
	profile := fs.String("profile", "", "write one CPU profile per case into this directory")
	brokerBin := fs.String("broker-bin", "bin/broker", "broker binary for the scale case (built with go build when missing)")
	rate := fs.Int("rate", 5000, "offered rate of the latency case, events/s")
	markdown := fs.Bool("markdown", false, "also print the table as Markdown")
	from := fs.String("from", "", "do not run: print (and with -doc write) the results of this results file")
	doc := fs.String("doc", "", "also write the table into this Markdown file, between its busbench:table markers (make bench: docs/performance.md)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "busbench: -runs must be at least 1")
		return 2
	}
	switch *side {
	case bench.SideBoth, bench.SideRaw, bench.SideBus:
	default:
		fmt.Fprintf(os.Stderr, "busbench: -side %q: use both, raw or bus\n", *side)
		return 2
	}
	var cases []string
	if *casesFlag != "" {
		for _, c := range strings.Split(*casesFlag, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cases = append(cases, c)
			}
		}
	}
	if *out == "" {
		*out = "bench/results/latest.json"
		if *quick {
			*out = "bench/results/quick.json"
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "busbench: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rep *bench.Report
	if *from != "" {
		rep, err = bench.ReadReport(*from)
		*out = ""
	} else {
		rep, err = bench.Run(ctx, bench.Config{
			Quick: *quick, Runs: *runs, Cases: cases, Side: *side, ProfileDir: *profile,
			BrokerBin: *brokerBin, Self: self, Rate: *rate, Log: os.Stderr,
		})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "busbench: %v\n", err)
		return 1
	}
	fmt.Println()
	rep.WriteTable(os.Stdout)
	if *markdown {
		fmt.Println()
		rep.WriteMarkdown(os.Stdout)
	}
	for _, s := range rep.Skipped {
		fmt.Printf("skipped: %s\n", s)
	}
	if *out != "" {
		if err := rep.WriteJSON(*out); err != nil {
			fmt.Fprintf(os.Stderr, "busbench: write %s: %v\n", *out, err)
			return 1
		}
	}
	if *doc != "" {
		if len(cases) > 0 || *side != bench.SideBoth {
			fmt.Fprintf(os.Stderr, "busbench: not updating %s from a partial run (-cases or -side)\n", *doc)
		} else if err := rep.UpdateDoc(*doc); err != nil {
			fmt.Fprintf(os.Stderr, "busbench: update %s: %v\n", *doc, err)
			return 1
		}
	}
	fmt.Printf("\n%s mode, %d runs per figure, %s on %d CPUs (%s)", rep.Mode, rep.Runs, rep.Duration, rep.Machine.NumCPU, rep.Machine.CPUModel)
	if *out != "" {
		fmt.Printf("; results in %s", *out)
	}
	fmt.Println()
	if len(rep.Skipped) > 0 {
		return 1
	}
	return 0
}

// childNATS serves a bare nats-server for the raw side of the scale case.
func childNATS(args []string) int {
	fs := flag.NewFlagSet(bench.ChildNATSArg, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:4222", "client address")
	store := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *store == "" {
		fmt.Fprintln(os.Stderr, "busbench child-nats: -store is required")
		return 2
	}
	if err := bench.ServeChildNATS(*listen, *store); err != nil {
		fmt.Fprintf(os.Stderr, "busbench child-nats: %v\n", err)
		return 1
	}
	return 0
}
