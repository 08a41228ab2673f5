package broker

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// TestMetricsFollowTraffic scrapes a real broker's /metrics while a plugin
// consumes, acks, naks and terminates real events, and finds each of them
// counted: per-plugin state, consumer lag, acks, naks, dead letters,
// stream sizes; the pre-initialised series exist at 0 before anything
// happened; and promtool accepts the output.
func TestMetricsFollowTraffic(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	addr := tb.b.HTTPAddr()
	ctx := context.Background()

	m := manifest("sink", "1.0.0")
	m.Events = &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, MaxDeliver: 3, AckWait: schemas.Duration(30 * time.Second)}
	p := newFakePlugin(t, tb.b.NATSURL(), m, tb.opts...)
	p.start("plugbus")
	p.register(t, tb, nil)
	broken := newFakePlugin(t, tb.b.NATSURL(), manifest("broken", "1.0.0"), tb.opts...)
	broken.initErr = &schemas.Error{Code: schemas.CodePluginError, Message: "no database"}
	broken.start("plugbus")
	broken.register(t, tb, nil)

	mfs := scrape(t, addr)
	sink := map[string]string{"plugin": "sink"}
	for _, st := range pluginStates {
		want := 0.0
		if st == schemas.StateActive {
			want = 1
		}
		if got := mustSample(t, mfs, "plugbus_plugin_state", map[string]string{"plugin": "sink", "state": string(st)}); got != want {
			t.Errorf("plugbus_plugin_state{plugin=sink,state=%s} = %v, want %v", st, got, want)
		}
	}
	if got := mustSample(t, mfs, "plugbus_plugin_state", map[string]string{"plugin": "broken", "state": "ERROR"}); got != 1 {
		t.Errorf("broken plugin not in ERROR: %v", got)
	}
	for state, want := range map[string]float64{"ACTIVE": 1, "ERROR": 1, "STALE": 0, "REGISTERED": 0} {
		if got := mustSample(t, mfs, "plugbus_plugins", map[string]string{"state": state}); got != want {
			t.Errorf("plugbus_plugins{state=%s} = %v, want %v", state, got, want)
		}
	}
	if got := mustSample(t, mfs, "plugbus_build_info", map[string]string{"version": Version, "goversion": runtime.Version()}); got != 1 {
		t.Errorf("plugbus_build_info = %v", got)
	}
	if got := mustSample(t, mfs, "plugbus_jetstream_up", nil); got != 1 {
		t.Errorf("plugbus_jetstream_up = %v", got)
	}
	// Known in advance, so there at 0 before the first occurrence.
	for _, s := range []struct {
		name   string
		labels map[string]string
	}{
		{"plugbus_consumer_pending_messages", sink},
		{"plugbus_consumer_ack_pending_messages", sink},
		{"plugbus_consumer_acked_total", sink},
		{"plugbus_consumer_nakked_total", sink},
		{"plugbus_dead_letters_total", map[string]string{"consumer": "plugin_sink", "cause": schemas.CauseTerminated}},
		{"plugbus_dead_letters_total", map[string]string{"consumer": "plugin_sink", "cause": schemas.CauseMaxDeliveries}},
		{"plugbus_hook_chains_total", map[string]string{"hook": schemas.HookAlertPreNotify, "outcome": schemas.ChainFailed}},
		{"plugbus_hook_step_duration_seconds", map[string]string{"hook": schemas.HookJobPreDeploy, "result": schemas.CodeTimeout}},
		{"plugbus_api_requests_total", map[string]string{"endpoint": schemas.APIAlertsFire, "code": schemas.CodeInternal}},
		{"plugbus_api_requests_total", map[string]string{"endpoint": schemas.APIJobsDeploy, "code": "other"}},
		{"plugbus_api_request_duration_seconds", map[string]string{"endpoint": schemas.APIMachinesAction}},
		{"plugbus_bad_input_total", map[string]string{"kind": schemas.ReasonMalformed}},
		{"plugbus_events_published_total", map[string]string{"type": schemas.TypeJobDeleted}},
		{"plugbus_plugin_call_duration_seconds", map[string]string{"verb": schemas.VerbAction, "result": schemas.CodeNoResponders}},
		{"plugbus_alert_intake_requests_total", map[string]string{"format": "alertmanager", "code": schemas.CodeInvalidField}},
		{"plugbus_alert_intake_alerts_total", map[string]string{"status": "resolved", "result": schemas.IntakeNotFound}},
	} {
		if got := mustSample(t, mfs, s.name, s.labels); got != 0 {
			t.Errorf("%s%v = %v before any traffic, want 0", s.name, s.labels, got)
		}
	}
	if _, ok := sample(mfs, "plugbus_consumer_pending_messages", map[string]string{"plugin": "broken"}); ok {
		t.Error("a plugin without a consumer has a lag series")
	}

	// Three alerts wait for the plugin: lag 3.
	ids := map[string]int{}
	for i := range 3 {
		var ar schemas.AlertResponse
		tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "s"}, &ar)
		ids[ar.EventID] = i
	}
	if got := mustSample(t, scrape(t, addr), "plugbus_consumer_pending_messages", sink); got != 3 {
		t.Fatalf("pending = %v with 3 events waiting, want 3", got)
	}

	// The plugin takes them: acks the first, naks the second, terminates
	// the third; then takes the redelivered second and acks it.
	cons, err := tb.js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName("sink"))
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(n int) []jetstream.Msg {
		t.Helper()
		var out []jetstream.Msg
		for len(out) < n {
			batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for msg := range batch.Messages() {
				out = append(out, msg)
				got++
			}
			if got == 0 {
				t.Fatalf("fetched %d of %d events", len(out), n)
			}
		}
		return out
	}
	msgs := fetch(3)
	mfs = scrape(t, addr)
	if got := mustSample(t, mfs, "plugbus_consumer_ack_pending_messages", sink); got != 3 {
		t.Errorf("ack pending = %v with 3 events delivered and none acked, want 3", got)
	}
	if got := mustSample(t, mfs, "plugbus_consumer_pending_messages", sink); got != 0 {
		t.Errorf("pending = %v with every event delivered, want 0", got)
	}
	for _, msg := range msgs {
		switch ids[msg.Headers().Get("ce-id")] {
		case 0:
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := msg.Nak(); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := msg.TermWithReason("permanent: bad webhook"); err != nil {
				t.Fatal(err)
			}
		}
	}
	redelivered := fetch(1)[0]
	if err := redelivered.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	// (The collectors of one scrape run concurrently: the stream's size
	// may be read before the dead letter is stored and the counter after.)
	waitFor(t, "2 acks, 1 nak, 1 dead letter on /metrics", func() bool {
		mfs = scrape(t, addr)
		acked, _ := sample(mfs, "plugbus_consumer_acked_total", sink)
		nakked, _ := sample(mfs, "plugbus_consumer_nakked_total", sink)
		dead, _ := sample(mfs, "plugbus_dead_letters_total", map[string]string{"consumer": "plugin_sink", "cause": schemas.CauseTerminated})
		dlq, _ := sample(mfs, "plugbus_stream_messages", map[string]string{"stream": schemas.StreamDLQ})
		return acked == 2 && nakked == 1 && dead == 1 && dlq == 1
	})
	for name, want := range map[string]float64{
		"plugbus_consumer_delivered_total":      4, // 3 + the redelivery
		"plugbus_consumer_ack_pending_messages": 0,
		"plugbus_consumer_pending_messages":     0,
	} {
		if got := mustSample(t, mfs, name, sink); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := mustSample(t, mfs, "plugbus_api_requests_total", map[string]string{"endpoint": schemas.APIAlertsFire, "code": "ok"}); got != 3 {
		t.Errorf("alerts.fire ok = %v, want 3", got)
	}

	// Unregistered: its series go.
	tb.mustCall(t, schemas.APIPluginsUnregister+".broken", schemas.PluginUnregisterRequest{Name: "broken", Force: true}, nil)
	waitFor(t, "the unregistered plugin's series to go", func() bool {
		_, ok := sample(scrape(t, addr), "plugbus_plugin_state", map[string]string{"plugin": "broken"})
		return !ok
	})

	promtoolCheckMetrics(t, scrapeBody(t, addr))
}

// TestMetricsOpenMetrics asks for OpenMetrics as Prometheus does and gets
// it; without asking, the classic text format.
func TestMetricsOpenMetrics(t *testing.T) {
	tb := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	get := func(accept string) (string, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tb.b.HTTPAddr()+"/metrics", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("Content-Type"), string(body)
	}
	ct, body := get("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	if !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(body, "# EOF\n") {
		t.Fatalf("OpenMetrics asked for, got %q ending %q", ct, body[max(0, len(body)-20):])
	}
	if !strings.Contains(body, "plugbus_build_info{") {
		t.Error("no plugbus_build_info in the OpenMetrics output")
	}
	ct, body = get("")
	if !strings.HasPrefix(ct, "text/plain") || strings.Contains(body, "# EOF") {
		t.Fatalf("no Accept: got %q", ct)
	}
}
