package plugintest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

func scrapeURL(t *testing.T, url string) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return body, mfs
}

// value returns the value of the series of name whose labels include want
// (a histogram's count), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	for _, m := range mfs[name].GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestPluginMetrics runs an SDK plugin on a real bus, serves its metrics,
// and finds its handler calls counted per kind, name and result — and the
// broker's acks and naks of its consumer agreeing with them.
func TestPluginMetrics(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithBrokerConfig(func(c *broker.Config) { c.HTTPAddr = "127.0.0.1:0" }))
	m := schemas.Manifest{
		Name: "metered", Version: "1.2.3", Description: "counts what it does",
		Events:  &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired, "io.plugbus.job.v1.*"}, Backoff: []schemas.Duration{schemas.Duration(time.Millisecond)}},
		Actions: []schemas.ActionSpec{{Command: "poke", Model: "machines"}, {Command: "never", Model: "machines"}},
	}
	p, err := sdk.New(m, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	p.HandleEvent(schemas.TypeAlertFired, func(context.Context, event.Event) error {
		if calls.Add(1) == 1 {
			return errors.New("first one fails") // nak, redelivered
		}
		return nil
	})
	p.HandleEvent("io.plugbus.job.v1.*", func(context.Context, event.Event) error { return nil })
	p.HandleAction("poke", func(context.Context, *sdk.Action) (any, error) { return "poked", nil })
	p.HandleAction("never", func(context.Context, *sdk.Action) (any, error) { return nil, errors.New("never works") })
	srv := httptest.NewServer(p.MetricsHandler())
	defer srv.Close()

	_, mfs := scrapeURL(t, srv.URL)
	for _, want := range []map[string]string{
		{"plugin": "metered", "kind": "event", "name": schemas.TypeAlertFired, "result": "error"},
		{"plugin": "metered", "kind": "action", "name": "never", "result": "ok"},
		{"plugin": "metered", "kind": "init", "name": "init", "result": "ok"},
	} {
		if v, ok := value(mfs, "plugbus_sdk_handler_calls_total", want); !ok || v != 0 {
			t.Errorf("plugbus_sdk_handler_calls_total%v = %v (present %v) before any call, want 0", want, v, ok)
		}
	}
	if v, ok := value(mfs, "plugbus_sdk_build_info", map[string]string{"plugin": "metered", "version": "1.2.3"}); !ok || v != 1 {
		t.Errorf("plugbus_sdk_build_info: %v %v", v, ok)
	}

	bus.StartPlugin(t, p)
	for range 3 {
		bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "s"}, nil)
	}
	bus.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "demo", Version: "1", Image: "nginx"}, nil)
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "poke"}, nil)
	if err := bus.Call(schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "never"}, nil); err == nil {
		t.Fatal("the failing action succeeded")
	}

	bus.WaitFor(t, func() bool {
		_, mfs = scrapeURL(t, srv.URL)
		ok, _ := value(mfs, "plugbus_sdk_handler_calls_total", map[string]string{"kind": "event", "name": schemas.TypeAlertFired, "result": "ok"})
		jobs, _ := value(mfs, "plugbus_sdk_handler_calls_total", map[string]string{"kind": "event", "name": schemas.TypeJobDeployed, "result": "ok"})
		return ok == 3 && jobs == 1
	})
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"kind": "event", "name": schemas.TypeAlertFired, "result": "error"}, 1},
		{map[string]string{"kind": "action", "name": "poke", "result": "ok"}, 1},
		{map[string]string{"kind": "action", "name": "never", "result": "error"}, 1},
		{map[string]string{"kind": "init", "name": "init", "result": "ok"}, 1},
		{map[string]string{"kind": "verify", "name": "verify", "result": "ok"}, 1},
	} {
		if v, _ := value(mfs, "plugbus_sdk_handler_calls_total", c.labels); v != c.want {
			t.Errorf("plugbus_sdk_handler_calls_total%v = %v, want %v", c.labels, v, c.want)
		}
	}
	if v, _ := value(mfs, "plugbus_sdk_handler_duration_seconds", map[string]string{"kind": "event", "name": schemas.TypeAlertFired}); v != 4 {
		t.Errorf("event handler durations observed: %v, want 4", v)
	}

	// The broker saw the same from JetStream: 4 acks (3 alerts, 1 job),
	// 1 nak.
	addr := bus.Broker().HTTPAddr()
	bus.WaitFor(t, func() bool {
		_, bm := scrapeURL(t, "http://"+addr+"/metrics")
		acked, _ := value(bm, "plugbus_consumer_acked_total", map[string]string{"plugin": "metered"})
		nakked, _ := value(bm, "plugbus_consumer_nakked_total", map[string]string{"plugin": "metered"})
		return acked == 4 && nakked == 1
	})

	body, mfs := scrapeURL(t, srv.URL)
	checkDocumented(t, mfs)
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("promtool is not installed (CI is set: .ci/run installs it)")
	}
}

// sdkDocRow is a row of the SDK's metric table in docs/observability.md:
// "| `NAME` | TYPE | `LABEL`, `LABEL` | what |".
var sdkDocRow = regexp.MustCompile("(?m)^\\| `(plugbus_sdk_[a-z0-9_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")

// checkDocumented compares the SDK's families with the table of
// docs/observability.md: names, types and labels.
func checkDocumented(t *testing.T, mfs map[string]*dto.MetricFamily) {
	t.Helper()
	raw, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]string{}
	for _, m := range sdkDocRow.FindAllStringSubmatch(string(raw), -1) {
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" && l != "—" {
				labels = append(labels, l)
			}
		}
		sort.Strings(labels)
		doc[m[1]] = m[2] + " " + strings.Join(labels, ",")
	}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "plugbus_sdk_") {
			continue
		}
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
		got := strings.ToLower(mf.GetType().String()) + " " + strings.Join(ls, ",")
		if doc[name] != got {
			t.Errorf("%s: the plugin serves %q (type labels), docs/observability.md says %q", name, got, doc[name])
		}
		delete(doc, name)
	}
	for name := range doc {
		t.Errorf("docs/observability.md documents %s, which the plugin does not serve", name)
	}
}
