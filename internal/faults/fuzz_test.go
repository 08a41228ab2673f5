package faults

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzTarget is one Fuzz function of the module.
type fuzzTarget struct{ name, pkg string }

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)

// fuzzTargets finds every Fuzz function in the module's test files, so a
// new one is run without a change here.
func fuzzTargets(t *testing.T) []fuzzTarget {
	t.Helper()
	root := repoRoot()
	var out []fuzzTarget
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "bin" || d.Name() == "data" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
			out = append(out, fuzzTarget{name: string(m[1]), pkg: "./" + filepath.ToSlash(rel)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pkg+out[i].name < out[j].pkg+out[j].name })
	return out
}

var execsRE = regexp.MustCompile(`execs: (\d+)`)

// Scenario 9: every Fuzz target (the API decoders, manifests, the event
// codec, config values, hostd's line writer) for $PLUGBUS_FUZZTIME each
// (default 3000x: 3,000 executions past the seed corpus): executions counted, any crash fails the test (the
// crashing input is kept under the package's testdata/fuzz, as go test
// does).
func TestFuzz(t *testing.T) {
	heavy(t)
	start := time.Now()
	// A count, not a duration: with a duration, Go 1.26's fuzz
	// coordinator can fail a target with a bare "context deadline
	// exceeded" and no crashing input when the machine is loaded
	// (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
	fuzzTime := os.Getenv("PLUGBUS_FUZZTIME")
	if fuzzTime == "" {
		fuzzTime = "3000x"
	}
	targets := fuzzTargets(t)
	if len(targets) == 0 {
		t.Fatal("no Fuzz targets found")
	}
	total, crashes := 0, 0
	var notes []string
	for _, ft := range targets {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-fuzz", "^"+ft.name+"$", "-fuzztime", fuzzTime, ft.pkg)
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		cancel()
		execs := 0
		for _, m := range execsRE.FindAllSubmatch(out, -1) {
			execs, _ = strconv.Atoi(string(m[1])) // the last report is the total
		}
		total += execs
		crashed := 0
		if err != nil {
			crashed = 1
			crashes++
			t.Errorf("%s %s: %v\n%s", ft.pkg, ft.name, err, out)
		}
		notes = append(notes, fmt.Sprintf("%s (%s) %d execs, %d crashes", ft.name, strings.TrimPrefix(ft.pkg, "./"), execs, crashed))
	}
	record(t, Row{Scenario: "fuzz", Offered: num(total), Acknowledged: num(total - crashes), Lost: num(0), Unexpected: num(crashes),
		Notes:   fmt.Sprintf("%s each: %s; offered = executions, unexpected = crashing inputs", fuzzTime, strings.Join(notes, "; ")),
		Seconds: time.Since(start).Seconds()})
}
