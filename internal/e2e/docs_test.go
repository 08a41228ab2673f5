package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// repoRoot is the plugbus checkout the tests run in.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// docFiles returns the files a doc page lays out as a line starting with
// "`DIR/PATH`" followed by a fenced block, keyed by PATH under DIR (the
// first such block of each path).
func docFiles(t *testing.T, page, dir string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), page))
	if err != nil {
		t.Fatal(err)
	}
	head := regexp.MustCompile("^`" + regexp.QuoteMeta(dir) + "/([^`]+)`")
	files := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	var name string
	var body []string
	inFence := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inFence && strings.HasPrefix(line, "```"):
			files[name] = strings.Join(body, "\n") + "\n"
			inFence, name, body = false, "", nil
		case inFence:
			body = append(body, line)
		case name != "" && strings.HasPrefix(line, "```"):
			inFence = true
		default:
			// A file is laid out once; later mentions only refer to it.
			if m := head.FindStringSubmatch(line); m != nil && files[m[1]] == "" {
				name = m[1]
			}
		}
	}
	return files
}

// TestWritingAPluginExample builds the plugin in its own module exactly as
// docs/writing-a-plugin.md shows it, runs its tests, and runs the binary
// against the real broker.
func TestWritingAPluginExample(t *testing.T) {
	files := docFiles(t, "docs/writing-a-plugin.md", "hello")
	for _, want := range []string{"go.mod", "main.go", "hello_test.go"} {
		if files[want] == "" {
			t.Fatalf("docs/writing-a-plugin.md has no `hello/%s` block (found %v)", want, files)
		}
	}
	dir := filepath.Join(t.TempDir(), "hello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	for name, body := range files {
		if name == "go.mod" {
			// The page puts the checkout at ../plugbus; here it is this repo.
			if !strings.Contains(body, "=> ../plugbus") {
				t.Fatalf("go.mod has no replace of plugbus:\n%s", body)
			}
			body = strings.ReplaceAll(body, "=> ../plugbus", "=> "+root)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("mod", "tidy")
	goCmd("vet", "./...")
	if out := goCmd("test", "-count=1", "-v", "./..."); !strings.Contains(out, "--- PASS: TestHelloOnTheBus") || !strings.Contains(out, "--- PASS: TestGreet") {
		t.Fatalf("the example's tests did not both pass:\n%s", out)
	}
	goCmd("build", "-o", "hello", ".")
	hello := filepath.Join(dir, "hello")

	out, err := exec.Command(hello, "define").Output()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil || m["name"] != "hello" {
		t.Fatalf("define printed %s (%v)", out, err)
	}

	// Next to a running bus, as the page says: its own credentials first
	// (busctl finds the admin's through $PLUGBUS_DATA_DIR).
	b, _ := startBus(t)
	b.mustBusctl(t, "plugins", "creds", "hello", "--out", filepath.Join(dir, "hello.creds"))
	start(t, hello, "listen", "--server", b.natsURL, "--config", "greeting=hi", "--creds", filepath.Join(dir, "hello.creds"))
	b.waitActive(t, "hello")
	out = []byte(b.mustBusctl(t, "machine", "action", "m1", "greet", "--param", "hello/name=bob"))
	if !strings.Contains(string(out), `"said": "hi, bob"`) {
		t.Fatalf("busctl machine action m1 greet --param hello/name=bob printed %s", out)
	}
}
