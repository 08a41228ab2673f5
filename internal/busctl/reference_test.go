package busctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/internal/busctl"
)

// The reference markers of docs/busctl.md.
const (
	refBegin = "<!-- BEGIN busctl reference: generated from the command tree; go test ./internal/busctl -run TestReference -update -->\n"
	refEnd   = "<!-- END busctl reference -->\n"
)

// docs/busctl.md holds the command reference as busctl.Reference makes it
// from the command tree: a command, flag or help text changed without the
// page fails here (-update rewrites the section).
func TestReference(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "busctl.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, refBegin), strings.Index(doc, refEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/busctl.md has no reference section between\n%s and\n%s", refBegin, refEnd)
	}
	want := "\n" + busctl.Reference() + "\n"
	got := doc[i+len(refBegin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc[:i+len(refBegin)]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the command reference in docs/busctl.md is stale: run go test ./internal/busctl -run TestReference -update\nwant:\n%s", want)
}

// Every command in the reference says what it does, and every flag too.
func TestReferenceComplete(t *testing.T) {
	for _, l := range strings.Split(busctl.Reference(), "\n") {
		if strings.HasPrefix(l, "| `busctl") {
			cells := strings.Split(l, " | ")
			if len(cells) < 3 || strings.TrimSpace(cells[1]) == "" {
				t.Errorf("no description: %s", l)
			}
		}
		if strings.Contains(l, "`  ") || strings.Contains(l, "` <br>") {
			t.Errorf("a flag without help: %s", l)
		}
	}
	for _, cmd := range []string{"plugins verify", "hooks ls", "job deploy", "machine params", "alert get", "events tail", "events get",
		"dlq ls", "dlq show", "dlq replay", "dlq purge", "hosts get", "completion bash",
		"actions get", "actions watch", "actions ls", "actions cancel"} {
		if !strings.Contains(busctl.Reference(), "| `busctl "+cmd) {
			t.Errorf("the reference lacks busctl %s", cmd)
		}
	}
}
