// Command peerbench measures plugbus's real topology (plugins as separate
// processes, bench's topology case) beside hashicorp/go-plugin over net/rpc
// and gRPC doing the same hook work with its plugins as processes, in one
// run, and writes bench/results/peers.json (make bench-peers). It is its
// own module so that the main module does not depend on go-plugin.
//
//	peerbench [-quick] [-runs 3] [-out FILE] [-doc docs/performance.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/plugbus/plugbus/internal/bench"
)

func main() {
	if servePlugin() {
		return
	}
	if code, ok := bench.ChildMain(); ok {
		os.Exit(code)
	}
	// yamux reports a closed plugin connection on the standard logger.
	log.SetOutput(io.Discard)
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("peerbench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes and short runs")
	runs := fs.Int("runs", 3, "repetitions of every figure (the median is reported)")
	out := fs.String("out", "bench/results/peers.json", "results file")
	doc := fs.String("doc", "", "also write the table into this Markdown file, between its busbench:peers markers")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerbench: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, bench.Config{
		Quick: *quick, Runs: *runs, Cases: []string{"topology"}, Self: self, Log: os.Stderr,
		Peers: []bench.Peer{peer(self, "netrpc"), peer(self, "grpc")},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerbench: %v\n", err)
		return 1
	}
	rep.Baseline = "raw NATS (topology rows) / go-plugin (peers rows)"
	fmt.Println()
	rep.WriteTable(os.Stdout)
	for _, s := range rep.Skipped {
		fmt.Printf("skipped: %s\n", s)
	}
	if err := rep.WriteJSON(*out); err != nil {
		fmt.Fprintf(os.Stderr, "peerbench: write %s: %v\n", *out, err)
		return 1
	}
	if *doc != "" {
		if err := rep.UpdateDocBetween(*doc, bench.DocPeersStart, bench.DocPeersEnd); err != nil {
			fmt.Fprintf(os.Stderr, "peerbench: update %s: %v\n", *doc, err)
			return 1
		}
	}
	fmt.Printf("\n%s mode, %d runs per figure, %s; results in %s\n", rep.Mode, rep.Runs, rep.Duration, *out)
	if len(rep.Skipped) > 0 {
		return 1
	}
	return 0
}
