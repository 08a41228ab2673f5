package broker

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// The shipped dashboard, rules and the page that documents the metrics.
const (
	dashboardFile = "../deployments/grafana/plugbus.json"
	rulesFile     = "../deployments/prometheus/rules.yml"
	rulesTestFile = "../deployments/prometheus/rules_test.yml"
	metricsDoc    = "../docs/observability.md"
)

// grafanaVars replaces the dashboard's variables the way Grafana does
// before a query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "${datasource}", "prometheus", "$plugin", ".*")

// promqlNonMetric are the identifiers of a PromQL expression that are not
// metric names once strings, label matchers, ranges and grouping lists are
// gone.
var promqlNonMetric = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
}

var (
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	labelValues    = regexp.MustCompile(`^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)`)
)

// metricNames returns the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(strings.TrimSpace(expr)); m != nil {
		return []string{m[1]}
	}
	s := promqlString.ReplaceAllString(expr, `""`)
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if promqlNonMetric[strings.ToLower(id)] || strings.HasPrefix(rest, "(") {
			continue // a keyword or a function
		}
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the unit of a duration or an exponent
		}
		out = append(out, id)
	}
	return out
}

// dashboardQueries returns every PromQL query of a Grafana dashboard: its
// panels' targets (rows' nested panels too) and its query variables.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		ID      int      `json:"id"`
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var dash struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Fatalf("%s: no uid or title", dashboardFile)
	}
	queries := map[string]string{}
	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if other, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" || tg.RefID == "" {
					t.Errorf("panel %q: a target without expr or refId", p.Title)
				}
				queries[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
		}
		queries["variable "+v.Name] = q.Query
	}
	return queries
}

// ruleQueries returns the expression of every rule of the rules file.
func ruleQueries(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out["rule "+r.Alert] = r.Expr
		}
	}
	return out
}

// scrapeAfterTraffic runs a broker with a plugin that consumes events,
// makes some traffic, and returns a scrape of /metrics.
func scrapeAfterTraffic(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	m := manifest("sink", "1.0.0")
	m.Events = &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, AckWait: schemas.Duration(30 * time.Second)}
	p := newFakePlugin(t, tb.b.NATSURL(), m, tb.opts...)
	p.start(wire.DefaultPrefix)
	p.register(t, tb, nil)
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "traffic"}, nil)
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "demo", Version: "1", Image: "nginx"}, nil)
	if status, _, e := postAlerts(t, tb.b.HTTPAddr(), "", `{"alerts":[{"id":"a1","severity":"info","summary":"x"}]}`); status != 200 {
		t.Fatalf("intake: %d %v", status, e)
	}
	return scrape(t, tb.b.HTTPAddr())
}

// exposed reports whether a metric name a query selects is on /metrics: a
// family's own name, or a histogram's _bucket, _sum or _count series.
func exposed(mfs map[string]*dto.MetricFamily, name string) bool {
	if mf, ok := mfs[name]; ok {
		return mf.GetType() != dto.MetricType_HISTOGRAM
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if mf, ok := mfs[base]; ok && mf.GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
	}
	return false
}

// TestDashboardAndRulesUseExposedMetrics: every metric the Grafana
// dashboard and the alert rules query is on a real broker's /metrics, and
// every query parses as PromQL (promtool checks them as recording rules).
func TestDashboardAndRulesUseExposedMetrics(t *testing.T) {
	mfs := scrapeAfterTraffic(t)
	dash := dashboardQueries(t)
	if len(dash) < 20 {
		t.Fatalf("the dashboard has %d queries", len(dash))
	}
	rules := ruleQueries(t)
	used := map[string]bool{}
	for _, set := range []map[string]string{dash, rules} {
		for where, expr := range set {
			names := metricNames(grafanaVars.Replace(expr))
			if len(names) == 0 {
				t.Errorf("%s: no metric in %q", where, expr)
			}
			for _, n := range names {
				used[n] = true
				if !exposed(mfs, n) {
					t.Errorf("%s queries %s, which /metrics does not expose: %q", where, n, expr)
				}
			}
		}
	}
	// What the dashboard shows of plugbus: each broker family but the
	// Go runtime's and the process's own.
	for name := range mfs {
		if strings.HasPrefix(name, "plugbus_") && !used[name] && !used[name+"_bucket"] && !used[name+"_count"] {
			t.Errorf("%s is on /metrics but neither the dashboard nor the rules use it", name)
		}
	}

	promtool := requireTool(t, "promtool")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	keys := make([]string, 0, len(dash))
	for k := range dash {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		expr := grafanaVars.Replace(dash[k])
		if strings.HasPrefix(expr, "label_values(") {
			continue // Grafana's, not PromQL
		}
		q, _ := json.Marshal(expr)
		fmt.Fprintf(&b, "      - record: dashboard:query%d\n        expr: %s\n", i, q)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("the dashboard's queries are not all valid PromQL: %v\n%s\n%s", err, out, b.String())
	}
}

// TestPrometheusRules checks the shipped rules with promtool and runs
// their unit tests.
func TestPrometheusRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err := exec.Command(promtool, "test", "rules", rulesTestFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every rule has a unit test.
	tests, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	for where := range ruleQueries(t) {
		alert := strings.TrimPrefix(where, "rule ")
		if !strings.Contains(string(tests), "alertname: "+alert+"\n") {
			t.Errorf("%s has no test in %s", alert, rulesTestFile)
		}
	}
}

// docMetric is a metric row of docs/observability.md's tables:
// "| `NAME` | TYPE | `LABEL`, `LABEL` | what |" ("—" for no labels).
var docMetric = regexp.MustCompile("(?m)^\\| `(plugbus_[a-z0-9_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")

// docMetrics reads the metric tables of docs/observability.md: name →
// "type labels" (labels sorted, comma separated).
func docMetrics(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range docMetric.FindAllStringSubmatch(string(raw), -1) {
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" && l != "—" {
				labels = append(labels, l)
			}
		}
		sort.Strings(labels)
		out[m[1]] = m[2] + " " + strings.Join(labels, ",")
	}
	return out
}

// familyShape is a scraped family as docMetrics renders a row.
func familyShape(mf *dto.MetricFamily) string {
	labels := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != "le" {
				labels[l.GetName()] = true
			}
		}
	}
	var ls []string
	for l := range labels {
		ls = append(ls, l)
	}
	sort.Strings(ls)
	return strings.ToLower(mf.GetType().String()) + " " + strings.Join(ls, ",")
}

// TestMetricsDocumented: the broker families on /metrics and the broker
// table of docs/observability.md list the same names, types and labels
// (the SDK's table is checked in sdk/plugintest).
func TestMetricsDocumented(t *testing.T) {
	mfs := scrapeAfterTraffic(t)
	documented := docMetrics(t)
	if len(documented) < 20 {
		t.Fatalf("%s documents %d metrics", metricsDoc, len(documented))
	}
	for _, name := range familyNames(mfs) {
		if !strings.HasPrefix(name, "plugbus_") {
			continue
		}
		doc, ok := documented[name]
		if !ok {
			t.Errorf("%s is on /metrics but not in %s", name, metricsDoc)
			continue
		}
		if got := familyShape(mfs[name]); got != doc {
			t.Errorf("%s: /metrics has %q (type labels), %s says %q", name, got, metricsDoc, doc)
		}
	}
	for name := range documented {
		if strings.HasPrefix(name, "plugbus_sdk_") {
			continue
		}
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s documents %s, which /metrics does not expose", metricsDoc, name)
		}
	}
}
