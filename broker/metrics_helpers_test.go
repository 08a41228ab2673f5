package broker

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// requireTool returns the path of an external tool the test needs; a
// missing one fails the test (.ci/run installs them).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: install it (Debian: apt-get install prometheus prometheus-alertmanager; .ci/run does)", name)
	}
	return path
}

// scrapeBody GETs /metrics as Prometheus does by default (text format).
func scrapeBody(t testing.TB, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	return body
}

// scrape reads /metrics into metric families.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(scrapeBody(t, addr)))
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// sample finds the series of a family whose labels include want and
// returns its value (a counter's, a gauge's, a histogram's count).
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		ok := true
		for k, v := range want {
			if label(m, k) != v {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// mustSample is sample that fails the test when the series is missing.
func mustSample(t testing.TB, mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := sample(mfs, name, want)
	if !ok {
		t.Fatalf("no series %s%v on /metrics", name, want)
	}
	return v
}

// familyNames lists the families of a scrape, sorted.
func familyNames(mfs map[string]*dto.MetricFamily) []string {
	out := make([]string, 0, len(mfs))
	for n := range mfs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// promtoolCheckMetrics runs `promtool check metrics` on a scrape.
func promtoolCheckMetrics(t testing.TB, body []byte) {
	t.Helper()
	promtool := requireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
