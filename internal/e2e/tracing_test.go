package e2e

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/plugbus/plugbus/internal/tracing"
	"github.com/plugbus/plugbus/internal/tracing/otlptest"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// TestTracingOTLP is docs/tracing.md with real binaries: with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver, busctl,
// the broker, job-policy and notify-webhook export spans there, and a
// busctl command is one trace across them: busctl job deploy through the
// broker's API call to job-policy's hook handler, busctl alert fire
// through the broker to notify-webhook's event handler.
func TestTracingOTLP(t *testing.T) {
	rcv := otlptest.Start(t)
	t.Setenv(tracing.EnvEndpoint, rcv.URL())
	// Export batches quickly; the default waits 5s.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	b, broker := startBus(t)
	sink := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer sink.Close()
	policy := start(t, filepath.Join(b.bin, "plugins", "job-policy"), "listen", "--server", b.natsURL, "--log-format", "json",
		"--creds", b.pluginCreds(t, "job-policy"), "--config", `allowed_images=["*"]`)
	nw := start(t, filepath.Join(b.bin, "plugins", "notify-webhook"), "listen", "--server", b.natsURL, "--log-format", "json",
		"--creds", b.pluginCreds(t, "notify-webhook"), "--config", "url="+sink.URL)
	b.waitActive(t, "job-policy", "notify-webhook")

	b.mustBusctl(t, "job", "deploy", "traced", "--version", "1", "--image", "nginx")
	b.mustBusctl(t, "alert", "fire", "--id", "traced", "--severity", "warning", "--summary", "traced alert")

	// trace finds the trace of a busctl command and waits until it holds
	// the named spans of the named services.
	trace := func(command string, want map[string]string) map[string]otlptest.Span {
		t.Helper()
		var got map[string]otlptest.Span
		waitFor(t, "the spans of busctl "+command, func() bool {
			spans := rcv.Spans()
			root := ""
			for _, s := range spans {
				if s.Service == "busctl" && s.Name == "busctl "+command {
					root = s.TraceID
				}
			}
			if root == "" {
				return false
			}
			got = map[string]otlptest.Span{}
			for _, s := range spans {
				if s.TraceID == root {
					got[s.Name] = s
				}
			}
			for name, service := range want {
				if got[name].Service != service {
					return false
				}
			}
			return true
		})
		return got
	}
	deploy := trace("job deploy", map[string]string{
		"busctl job deploy":                     "busctl",
		"api " + schemas.APIJobsDeploy:          wire.BrokerService,
		"hook.step " + schemas.HookJobPreDeploy: wire.BrokerService,
		"hook " + schemas.HookJobPreDeploy:      "job-policy",
	})
	if deploy["api "+schemas.APIJobsDeploy].ParentID != deploy["busctl job deploy"].SpanID ||
		deploy["hook "+schemas.HookJobPreDeploy].ParentID != deploy["hook.step "+schemas.HookJobPreDeploy].SpanID {
		t.Fatalf("deploy trace parents: %+v", deploy)
	}
	alert := trace("alert fire", map[string]string{
		"api " + schemas.APIAlertsFire:      wire.BrokerService,
		"process " + schemas.TypeAlertFired: "notify-webhook",
		"busctl alert fire":                 "busctl",
	})
	if p := alert["process "+schemas.TypeAlertFired]; p.ParentID != alert["api "+schemas.APIAlertsFire].SpanID || p.Kind != "SPAN_KIND_CONSUMER" ||
		p.Attrs["messaging.system"] != "nats" || p.Attrs["plugbus.plugin"] != "notify-webhook" {
		t.Fatalf("event handler span %+v", p)
	}

	for _, p := range []*proc{policy, nw, broker} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0", p.name, err)
		}
	}
}
