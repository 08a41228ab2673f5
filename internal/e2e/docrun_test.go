package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the command sessions in the docs with the output of a fresh run")

// The pages whose shell sessions TestDocSessions runs. Each runs on a bus of
// its own, set up as `make run` sets it up.
var sessionPages = []string{"README.md", "docs/busctl.md", "docs/security.md", "docs/replay.md", "docs/observability.md"}

// A session command: a "$ CMD" line in a fenced block and the output lines
// that follow it, up to the next "$ " line, a "# " comment line or the
// fence (blank lines at the end left out).
type sessionCmd struct {
	page     string
	line     int // index of the "$ " line
	cmd      string
	out      []string
	outStart int // index of the first output line
	outEnd   int // index after the last
}

// parseSessions finds the session commands of a page.
func parseSessions(page string, lines []string) []sessionCmd {
	var cmds []sessionCmd
	inFence := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
			continue
		}
		if !inFence || !strings.HasPrefix(l, "$ ") {
			continue
		}
		c := sessionCmd{page: page, line: i, cmd: strings.TrimPrefix(l, "$ "), outStart: i + 1}
		j := i + 1
		// A "# " line at the start of a line is a comment of the session.
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "$ ") && !strings.HasPrefix(lines[j], "```") && !strings.HasPrefix(lines[j], "# "); j++ {
		}
		end := j
		for end > c.outStart && lines[end-1] == "" {
			end--
		}
		c.out = lines[c.outStart:end]
		c.outEnd = end
		cmds = append(cmds, c)
		i = j - 1
	}
	return cmds
}

// skip says whether a session command is shown but not run: it runs until
// Ctrl-C, or it needs what a session cannot give (marked "# not run").
func (c sessionCmd) skip() bool {
	return strings.Contains(c.cmd, "until Ctrl-C") || strings.Contains(c.cmd, "# not run")
}

// Normalisation of what changes from run to run, so a page can be
// compared with a fresh run: times, ids (chain ids too), durations, ports, and column
// padding (which follows the width of those).
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`\b\d\d:\d\d:\d\d(\.\d+)?\b`), "<time>"},
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<uuid>"},
	// A hook chain id: the operation, the attempt's start, the chain's number.
	{regexp.MustCompile(`\b[0-9A-Za-z]{22}-[0-9a-z]{1,13}-(\d+)\b`), "<id>-<attempt>-$1"},
	{regexp.MustCompile(`\b[0-9A-Za-z]{22}\b`), "<id>"},
	// NATS public keys: users, accounts, operators.
	{regexp.MustCompile(`\b[UAO][A-Z2-7]{55}\b`), "<nkey>"},
	{regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|us|ms|s)\b`), "<dur>"},
	{regexp.MustCompile(`"duration_ms":\s*[0-9.]+`), `"duration_ms":<n>`},
	{regexp.MustCompile(`(?m)^(\s*(- )?)duration_ms: [0-9.]+$`), "${1}duration_ms: <n>"}, // -o yaml
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<port>"},
	{regexp.MustCompile(`"(seq|stream_seq)":\s*\d+`), `"$1":<n>`},
	// A process id right after a running instance's state.
	{regexp.MustCompile(`\b(RUNNING|STARTING) +\d+\b`), "$1 <pid>"},
	{regexp.MustCompile(`"pid": \d+`), `"pid": <pid>`},
	{regexp.MustCompile(`[ \t]+`), " "},
}

func normalize(lines []string) string {
	// The nats CLI echoes an async server error (">>> Unexpected NATS
	// error: …") when it arrives, which races with its final error line.
	var kept []string
	for _, l := range lines {
		if !strings.Contains(l, ">>> Unexpected NATS error: ") {
			kept = append(kept, l)
		}
	}
	s := strings.TrimSpace(strings.Join(kept, "\n"))
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// docBus starts a bus as `make run` does (bin/localbus with the real
// deployments/local/hostd.yaml). It returns the bin dir, the NATS URL and
// how to map the addresses `make run` uses (which pages show) to this
// bus's, and back.
func docBus(t *testing.T) (bin, natsURL, dataDir string, addrs, back *strings.Replacer) {
	t.Helper()
	lb := startLocalBus(t, false)
	nats := strings.TrimPrefix(lb.natsURL, "nats://")
	return lb.bin, lb.natsURL, lb.dataDir,
		strings.NewReplacer("127.0.0.1:4222", nats, "127.0.0.1:8080", lb.httpAddr, "127.0.0.1:8099", lb.sink),
		strings.NewReplacer(nats, "127.0.0.1:4222", lb.httpAddr, "127.0.0.1:8080", lb.sink, "127.0.0.1:8099")
}

// TestDocSessions runs every shell session of the pages above against a
// real bus with the shipped plugins, in page order: each command must exit
// as the page shows (an "error:" line means non-zero), and where the page
// shows output, a fresh run must print the same, up to times, ids,
// durations and ports. With -update, the pages get the fresh output.
func TestDocSessions(t *testing.T) {
	root := repoRoot(t)
	for _, page := range sessionPages {
		t.Run(page, func(t *testing.T) {
			path := filepath.Join(root, page)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(raw), "\n")
			cmds := parseSessions(page, lines)
			if len(cmds) == 0 {
				t.Fatalf("%s has no session", page)
			}
			bin, natsURL, dataDir, addrs, back := docBus(t)
			// A working dir where both `bin/busctl` and `busctl` run the
			// built binaries.
			work := t.TempDir()
			if err := os.Symlink(bin, filepath.Join(work, "bin")); err != nil {
				t.Fatal(err)
			}
			// And ./data, where busctl finds the local admin's credentials.
			if err := os.Symlink(dataDir, filepath.Join(work, "data")); err != nil {
				t.Fatal(err)
			}
			// The nats CLI runs as installed (go install puts it in
			// GOPATH/bin), with no saved context.
			natsDir := filepath.Dir(natsCLI(t))
			env := append(os.Environ(), "NATS_CREDS=", "NATS_CONTEXT=", "XDG_CONFIG_HOME="+t.TempDir(), "PLUGBUS_DATA_DIR=", "NATS_URL="+natsURL,
				"PATH="+bin+string(os.PathListSeparator)+natsDir+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1")
			lastRC := 0
			replacements := map[int][]string{} // outStart → fresh output
			for _, c := range cmds {
				if c.skip() {
					continue
				}
				var out, prev []string
				rc := 0
				settles := strings.Contains(c.cmd, "(a moment later)")
				deadline := time.Now().Add(15 * time.Second)
			again:
				if strings.TrimSpace(c.cmd) == "echo $?" {
					out = []string{fmt.Sprint(lastRC)}
				} else {
					cmd := exec.Command("bash", "-c", addrs.Replace(c.cmd))
					cmd.Dir, cmd.Env = work, env
					var buf bytes.Buffer
					cmd.Stdout, cmd.Stderr = &buf, &buf
					done := make(chan error, 1)
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					go func() { done <- cmd.Wait() }()
					select {
					case err = <-done:
					case <-time.After(60 * time.Second):
						_ = cmd.Process.Kill()
						t.Fatalf("%s:%d: %s did not finish within 60s", page, c.line+1, c.cmd)
					}
					if ee, ok := err.(*exec.ExitError); ok {
						rc = ee.ExitCode()
					} else if err != nil {
						t.Fatal(err)
					}
					out = nil
					if s := strings.TrimRight(buf.String(), "\n"); s != "" {
						out = strings.Split(s, "\n")
					}
					lastRC = rc
				}
				// What a command shows a moment after the one before may
				// not be there yet: try again, bounded.
				if settles && time.Now().Before(deadline) {
					// Updating, the page's output is not known: take it
					// once two runs half a second apart agree.
					done := prev != nil && normalize(out) == normalize(prev)
					if !*update {
						done = normalize(out) == normalize(c.out)
					}
					if !done {
						prev = out
						time.Sleep(500 * time.Millisecond)
						goto again
					}
				}
				wantFail := false
				for _, l := range c.out {
					// busctl's errors, and the nats CLI's.
					if strings.HasPrefix(l, "error:") || strings.HasPrefix(l, "nats: error:") {
						wantFail = true
					}
				}
				if (rc != 0) != wantFail && strings.TrimSpace(c.cmd) != "echo $?" {
					t.Errorf("%s:%d: $ %s exited %d, but the page shows it %s\n%s", page, c.line+1, c.cmd, rc,
						map[bool]string{true: "failing", false: "succeeding"}[wantFail], strings.Join(out, "\n"))
				}
				if len(c.out) == 0 {
					continue // the page shows no output for it
				}
				if *update {
					for i := range out {
						out[i] = back.Replace(out[i])
					}
					replacements[c.outStart] = out
					continue
				}
				if got, want := normalize(out), normalize(c.out); got != want {
					t.Errorf("%s:%d: $ %s printed\n%s\nbut the page shows\n%s\n(run go test ./internal/e2e -run TestDocSessions -update to take the new output)",
						page, c.line+1, c.cmd, strings.Join(out, "\n"), strings.Join(c.out, "\n"))
				}
			}
			if *update && len(replacements) > 0 {
				var outLines []string
				for i := 0; i < len(lines); i++ {
					if fresh, ok := replacements[i]; ok {
						outLines = append(outLines, fresh...)
						for _, c := range cmds {
							if c.outStart == i {
								i = c.outEnd - 1
							}
						}
						continue
					}
					outLines = append(outLines, lines[i])
				}
				if err := os.WriteFile(path, []byte(strings.Join(outLines, "\n")), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
