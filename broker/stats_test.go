package broker

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// TestMicroStatsMatchMetrics sends a known mix of good and failing
// requests and finds the same request and error counts per endpoint in
// `$SRV.STATS` (what `nats micro stats` shows) as in /metrics, and a
// processing time that covers the plugin calls, not just the dispatch.
func TestMicroStatsMatchMetrics(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	url := tb.b.NATSURL()
	slow := newFakePlugin(t, url, actionManifest("slow", schemas.ActionSpec{Command: "work", Model: "machines"}), tb.opts...)
	slow.result = "done"
	slow.actDelay = 20 * time.Millisecond
	slow.start(wire.DefaultPrefix)
	slow.register(t, tb, nil)

	const good, pluginFailures, unknown, missing = 6, 4, 3, 2
	for range good {
		tb.mustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "work"}, nil)
	}
	slow.mu.Lock()
	slow.actErr = &schemas.Error{Code: schemas.CodeConflict, Message: "busy"}
	slow.mu.Unlock()
	for range pluginFailures {
		wantCode(t, tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "work"}, nil), schemas.CodeConflict, "")
	}
	for range unknown {
		wantCode(t, tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "nope"}, nil), schemas.CodeUnknownAction, "")
	}
	for range missing {
		wantCode(t, tb.call(t, schemas.APIMachinesAction, map[string]any{"machine": "m1"}, nil), schemas.CodeInvalidField, "")
	}
	wantCode(t, tb.call(t, schemas.APIJobsGet, schemas.JobRef{Name: "ghost", Version: "1"}, nil), schemas.CodeNotFound, "name")

	msg, err := tb.nc.Request("$SRV.STATS."+wire.BrokerService, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatal(err)
	}
	micros := map[string]*micro.EndpointStats{}
	for _, e := range st.Endpoints {
		micros[e.Name] = e
	}

	requests, errs := scrapeAPIRequests(t, "http://"+tb.b.HTTPAddr()+"/metrics")
	for endpoint, want := range map[string][2]int{
		schemas.APIMachinesAction:  {good + pluginFailures + unknown + missing, pluginFailures + unknown + missing},
		schemas.APIJobsGet:         {1, 1},
		schemas.APIPluginsRegister: {1, 0},
	} {
		e := micros[endpointName(endpoint)]
		if e == nil {
			t.Fatalf("no endpoint %s in $SRV.STATS", endpointName(endpoint))
		}
		if e.NumRequests != want[0] || e.NumErrors != want[1] {
			t.Errorf("%s in $SRV.STATS: %d requests, %d errors; want %d and %d", endpoint, e.NumRequests, e.NumErrors, want[0], want[1])
		}
		if requests[endpoint] != e.NumRequests || errs[endpoint] != e.NumErrors {
			t.Errorf("%s: /metrics counts %d requests, %d errors; $SRV.STATS %d and %d", endpoint, requests[endpoint], errs[endpoint], e.NumRequests, e.NumErrors)
		}
	}
	// Each good action waited at least 20ms on the plugin: the broker's
	// processing time includes it.
	if e := micros[endpointName(schemas.APIMachinesAction)]; e.ProcessingTime < good*20*time.Millisecond {
		t.Errorf("machines_action processing time %s does not include the %d plugin calls of 20ms", e.ProcessingTime, good)
	}
	if e := micros[endpointName(schemas.APIMachinesAction)]; e.LastError == "" {
		t.Error("no last error on machines_action")
	}
}

// scrapeAPIRequests reads plugbus_api_requests_total per endpoint: all
// requests, and those whose code is not ok.
func scrapeAPIRequests(t *testing.T, url string) (requests, errs map[string]int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	requests, errs = map[string]int{}, map[string]int{}
	mf := mfs["plugbus_api_requests_total"]
	if mf == nil {
		t.Fatal("no plugbus_api_requests_total")
	}
	for _, m := range mf.GetMetric() {
		endpoint, code := label(m, "endpoint"), label(m, "code")
		n := int(m.GetCounter().GetValue())
		requests[endpoint] += n
		if code != "ok" {
			errs[endpoint] += n
		}
	}
	return requests, errs
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
