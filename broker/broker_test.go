package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"bad prefix", Config{Prefix: "a.b"}, "prefix"},
		{"bad listen", Config{Listen: "nope"}, "listen"},
		{"bad http", Config{HTTPAddr: "nope"}, "http"},
		{"replicas", Config{Replicas: 7}, "replicas"},
		{"negative timeout", Config{PluginTimeout: -time.Second}, "plugin-timeout"},
		{"tiny max request", Config{MaxRequestBytes: 10}, "max-request-bytes"},
		{"creds without nats-url", Config{Creds: "x.creds"}, "creds"},
		{"short dedup window", Config{EventDedupWindow: time.Second}, "event-dedup-window"},
		{"tiny event stream", Config{EventMaxBytes: 1000}, "event-max-bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("want invalid config naming %s, got %v", c.field, err)
			}
		})
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config must be valid: %v", err)
	}
}

// TestEmbeddedRestartKeepsState runs the embedded default, deploys a job,
// restarts on the same data dir and finds the job, its event and the
// registry as they were.
func TestEmbeddedRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}
	tb := startBroker(t, cfg)

	resp, err := http.Get("http://" + tb.b.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "demo", Version: "1", Image: "nginx"}, &jr)
	var ms schemas.Machine
	tb.mustCall(t, schemas.APIMachinesSetParam, schemas.MachineSetParamRequest{Machine: "m1", Param: "a/b", Value: 3}, &ms)

	mresp, err := http.Get("http://" + tb.b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !bytes.Contains(body, []byte(`plugbus_events_published_total{type="io.plugbus.job.v1.deployed"} 1`)) {
		t.Fatalf("metrics do not count the deployed event:\n%s", body)
	}
	tb.stop()

	tb2 := startBroker(t, cfg)
	var job schemas.Job
	tb2.mustCall(t, schemas.APIJobsGet, schemas.JobRef{Name: "demo", Version: "1"}, &job)
	if job.Image != "nginx" || job.Status != schemas.JobDeployed {
		t.Fatalf("job after restart: %+v", job)
	}
	tb2.mustCall(t, schemas.APIMachinesGet, schemas.MachineRef{Name: "m1"}, &ms)
	if ms.Params["a/b"] != float64(3) {
		t.Fatalf("machine after restart: %+v", ms)
	}
	stream, err := tb2.js.Stream(context.Background(), schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(context.Background(), "plugbus.evt.job.v1.deployed")
	if err != nil {
		t.Fatalf("deployed event lost on restart: %v", err)
	}
	if msg.Header.Get("ce-id") != jr.EventID {
		t.Fatalf("stored event id %q, want %q", msg.Header.Get("ce-id"), jr.EventID)
	}
}

// TestEventReadableByCloudEventsSDK decodes a stored core event with the
// CloudEvents SDK's own NATS JetStream binding, proving other CloudEvents
// tools can read the stream, and checks publish dedupe by event id.
func TestEventReadableByCloudEventsSDK(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	var jr schemas.JobResponse
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{
		Name: "demo", Version: "1", Image: "nginx", Env: map[string]string{"A": "1"},
	}, &jr)

	ctx := context.Background()
	stream, _ := tb.js.Stream(ctx, schemas.StreamEvents)
	raw, err := stream.GetLastMsgForSubject(ctx, "plugbus.evt.job.v1.deployed")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-datacontenttype", "ce-dataschema"} {
		if raw.Header.Get(h) == "" {
			t.Errorf("header %s missing; headers: %v", h, raw.Header)
		}
	}
	if ct := raw.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/cloudevents") {
		t.Errorf("binary mode must not use a structured content type, got %q", ct)
	}
	if raw.Header.Get(jetstream.MsgIDHeader) != jr.EventID {
		t.Errorf("Nats-Msg-Id %q, want the event id %q", raw.Header.Get(jetstream.MsgIDHeader), jr.EventID)
	}
	m := cejs.NewMessage(&nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
	if m.ReadEncoding() != binding.EncodingBinary {
		t.Fatalf("SDK sees encoding %v, want binary", m.ReadEncoding())
	}
	ev, err := binding.ToEvent(ctx, m)
	if err != nil {
		t.Fatalf("CloudEvents SDK cannot decode our event: %v", err)
	}
	if ev.Subject() != "job/demo" {
		t.Errorf("CloudEvent subject %q, want job/demo", ev.Subject())
	}
	if ev.Type() != schemas.TypeJobDeployed || ev.ID() != jr.EventID || ev.Source() != Source ||
		ev.DataSchema() != schemas.EventSchemaID(schemas.TypeJobDeployed) || ev.DataContentType() != "application/json" {
		t.Fatalf("decoded event attributes wrong: %s", ev)
	}
	var data schemas.JobDeployedData
	if err := ev.DataAs(&data); err != nil {
		t.Fatal(err)
	}
	if data.Name != "demo" || data.Image != "nginx" || data.Env["A"] != "1" {
		t.Fatalf("decoded data: %+v", data)
	}
	if err := schemas.Validate(schemas.EventSchemaPath(ev.Type()), ev.Data()); err != nil {
		t.Fatalf("stored data fails its schema: %v", err)
	}

	// Publishing the same event again is deduplicated by its id.
	before, _ := stream.Info(ctx)
	ack, err := tb.js.PublishMsg(ctx, &nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data},
		jetstream.WithMsgID(ev.ID()))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := stream.Info(ctx)
	if !ack.Duplicate || after.State.Msgs != before.State.Msgs {
		t.Fatalf("re-publish not deduplicated: dup=%v msgs %d -> %d", ack.Duplicate, before.State.Msgs, after.State.Msgs)
	}
}

// TestAPIBadInput sends each kind of bad request and checks the error code,
// the named field and that nothing was stored or published.
func TestAPIBadInput(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), MaxRequestBytes: 4096})
	raw := func(endpoint string, body []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msg, err := tb.nc.RequestWithContext(ctx, wire.APISubject("plugbus", endpoint), body)
		if err != nil {
			return err
		}
		if code := msg.Header.Get(schemas.HeaderErrorCode); code != "" {
			e := &schemas.Error{}
			if err := json.Unmarshal(msg.Data, e); err != nil {
				t.Fatalf("error body is not an error envelope: %s", msg.Data)
			}
			if err := schemas.Validate("api/v1/error.json", msg.Data); err != nil {
				t.Fatalf("error body fails its schema: %v", err)
			}
			return e
		}
		return nil
	}
	cases := []struct {
		name     string
		endpoint string
		body     string
		code     string
		field    string
	}{
		{"not json", schemas.APIJobsDeploy, `{"name":`, schemas.CodeBadRequest, ""},
		{"missing image", schemas.APIJobsDeploy, `{"name":"a","version":"1"}`, schemas.CodeInvalidField, "image"},
		{"unknown field", schemas.APIJobsDeploy, `{"name":"a","version":"1","image":"x","imgae":"y"}`, schemas.CodeInvalidField, ""},
		{"bad env key", schemas.APIJobsDeploy, `{"name":"a","version":"1","image":"x","env":{"1BAD":"v"}}`, schemas.CodeInvalidField, ""},
		{"bad severity", schemas.APIAlertsFire, `{"severity":"panic","summary":"x"}`, schemas.CodeInvalidField, "severity"},
		{"bad manifest name", schemas.APIPluginsRegister + ".p", `{"manifest":{"name":"Bad Name","version":"1.0.0"}}`, schemas.CodeInvalidField, "manifest.name"},
		{"bad manifest duration", schemas.APIPluginsRegister + ".p", `{"manifest":{"name":"p","version":"1.0.0","events":{"types":["io.plugbus.job.v1.deployed"],"ack_wait":"soon"}}}`, schemas.CodeInvalidField, "manifest.events.ack_wait"},
		{"bad config schema", schemas.APIPluginsRegister + ".p", `{"manifest":{"name":"p","version":"1.0.0","config_schema":{"type":"nonsense"}}}`, schemas.CodeInvalidField, "manifest.config_schema"},
		{"unknown action", schemas.APIMachinesAction, `{"machine":"m1","command":"explode"}`, schemas.CodeUnknownAction, "command"},
		{"unknown job", schemas.APIJobsDelete, `{"name":"nope","version":"1"}`, schemas.CodeNotFound, "name"},
		{"oversized", schemas.APIAlertsFire, `{"severity":"info","summary":"` + strings.Repeat("x", 5000) + `"}`, schemas.CodeTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, raw(c.endpoint, []byte(c.body)), c.code, c.field)
		})
	}
	var jl schemas.JobListResponse
	tb.mustCall(t, schemas.APIJobsList, schemas.JobListRequest{}, &jl)
	if len(jl.Jobs) != 0 {
		t.Fatalf("bad requests stored jobs: %+v", jl.Jobs)
	}
	stream, _ := tb.js.Stream(context.Background(), schemas.StreamEvents)
	info, _ := stream.Info(context.Background())
	if info.State.Msgs != 0 {
		t.Fatalf("bad requests published %d events", info.State.Msgs)
	}
	// The rejections are counted.
	var buf bytes.Buffer
	mfs, _ := tb.b.metrics.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "plugbus_bad_input_total" {
			for _, m := range mf.GetMetric() {
				fmt.Fprintf(&buf, "%s=%v ", m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
			}
		}
	}
	for _, want := range []string{"bad_request=1", "too_large=1", "unknown_action=1"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("bad input counter %s missing: %s", want, buf.String())
		}
	}
}

// TestOversizedEventRefused: a message above the stream's max message size
// is refused to its publisher with an error naming the limit, and the
// stream keeps everything else.
func TestOversizedEventRefused(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), MaxRequestBytes: 64 << 10})
	ctx := context.Background()
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "before"}, nil)
	_, err := tb.js.Publish(ctx, "plugbus.evt.alert.v1.fired", bytes.Repeat([]byte("x"), 100<<10))
	if err == nil || !strings.Contains(err.Error(), "maximum") {
		t.Fatalf("oversized event accepted or unclear error: %v", err)
	}
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "after"}, nil)
	stream, _ := tb.js.Stream(ctx, schemas.StreamEvents)
	info, _ := stream.Info(ctx)
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d events, want the 2 valid ones", info.State.Msgs)
	}
}

// TestEmbeddedPortInUse: a taken NATS address fails the start at once with
// a message that says what to do.
func TestEmbeddedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := New(Config{DataDir: t.TempDir(), Listen: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background())
	var inUse *AddressInUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrAddressInUse) || inUse.Setting != "listen" || !strings.Contains(err.Error(), "not free") {
		t.Fatalf("want a clear port-in-use error, got %v", err)
	}
}
