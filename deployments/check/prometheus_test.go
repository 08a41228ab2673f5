package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// promtool check config of the compose Prometheus config, with the rule
// files where the compose file mounts them (here: a temporary directory),
// so promtool loads and checks the rules too once they are in the tree.
func TestPrometheusConfig(t *testing.T) {
	promtool := tool(t, "promtool", "apt-get install prometheus")
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := composeProject(t)
	pm := p.Services["prometheus"]
	cfgMount, ok := mountOf(pm, "/etc/prometheus/prometheus.yml")
	if !ok {
		t.Fatal("prometheus: no config mounted")
	}
	cfg := readFile(t, cfgMount.Source)
	if !strings.Contains(cfg, "/etc/prometheus/rules/") {
		t.Fatal("prometheus.yml does not load /etc/prometheus/rules/")
	}
	cfg = strings.ReplaceAll(cfg, "/etc/prometheus/rules/", rulesDir+"/")
	rulesLoaded := 0
	for _, v := range pm.Volumes {
		if !strings.HasPrefix(v.Target, "/etc/prometheus/rules/") {
			continue
		}
		b, err := os.ReadFile(v.Source)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rulesDir, filepath.Base(v.Target)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		rulesLoaded++
	}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, nil, promtool, "check", "config", file)
	t.Log(strings.TrimSpace(out))
	if rulesLoaded == 0 || !strings.Contains(out, "rules found") {
		t.Errorf("promtool did not check the rules:\n%s", out)
	}

	// It fails on what it should.
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte(strings.Replace(cfg, "scrape_interval: 15s", "scrape_interval: soon", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr(dir, nil, promtool, "check", "config", bad); err == nil {
		t.Errorf("promtool accepted a bad config:\n%s", out)
	}
}
