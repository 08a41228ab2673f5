package hostd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// defineTimeout bounds `BIN define`.
const defineTimeout = 10 * time.Second

// defineCache remembers the manifest each binary printed, keyed by path,
// size and modification time, so reconciling does not run define again
// for a binary that did not change.
type defineCache struct {
	mu      sync.Mutex
	entries map[string]defineEntry
}

type defineEntry struct {
	size    int64
	modTime time.Time
	m       schemas.Manifest
	err     error
}

// manifest runs `binary define` (or takes the cached answer) and validates
// what it prints as the broker would. The error says why a binary cannot
// run as a plugin.
func (c *defineCache) manifest(ctx context.Context, binary string) (schemas.Manifest, error) {
	fi, err := os.Stat(binary)
	if err != nil {
		return schemas.Manifest{}, fmt.Errorf("binary %s: %v", binary, err)
	}
	c.mu.Lock()
	if e, ok := c.entries[binary]; ok && e.size == fi.Size() && e.modTime.Equal(fi.ModTime()) {
		c.mu.Unlock()
		return e.m, e.err
	}
	c.mu.Unlock()
	m, err := define(ctx, binary)
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]defineEntry{}
	}
	c.entries[binary] = defineEntry{size: fi.Size(), modTime: fi.ModTime(), m: m, err: err}
	c.mu.Unlock()
	return m, err
}

func define(ctx context.Context, binary string) (schemas.Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, defineTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "define")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return schemas.Manifest{}, fmt.Errorf("%s define failed: %v: %s", binary, err, msg)
	}
	var m schemas.Manifest
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return m, fmt.Errorf("%s define printed no manifest (want the manifest as JSON): %v", binary, err)
	}
	if err := schemas.Validate(schemas.ManifestV1, stdout.Bytes()); err != nil {
		return m, fmt.Errorf("%s define printed an invalid manifest: %w", binary, err)
	}
	if err := m.Validate(); err != nil {
		return m, fmt.Errorf("%s define printed an invalid manifest: %w", binary, err)
	}
	return m, nil
}

// placed says whether a manifest's components allow the plugin on a host
// with these labels. Each component is "KEY" (the host has label KEY) or
// "KEY=VALUE" (label KEY is VALUE); every one must match. No components
// means anywhere.
func placed(components []string, labels map[string]string) (bool, string) {
	var missing []string
	for _, c := range components {
		k, v, hasValue := strings.Cut(c, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != v) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("its manifest needs components %s, which this host's labels do not have", strings.Join(missing, ", "))
}

func sortStrings(s []string) { sort.Strings(s) }
