package busctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// bus is an in-process nats-server with JetStream, and a connection to it.
type bus struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
	// brokerUp is set once a real broker serves the bus (ensureBroker).
	brokerUp bool
}

// ensureBroker runs a real broker on the bus (no identities: the test
// server has no auth): busctl reads the streams through it (streams.read).
// It creates the bus's streams.
func (b *bus) ensureBroker(t *testing.T) {
	t.Helper()
	if b.brokerUp {
		return
	}
	l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	br, err := broker.New(broker.Config{NATSURL: b.url, Logger: &l, HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-br.Ready():
	case err := <-done:
		t.Fatalf("broker stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker not ready within 30s")
	}
	b.brokerUp = true
}

func startBus(t *testing.T) *bus {
	t.Helper()
	s := testnats.Start(t, true)
	nc := testnats.Connect(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &bus{url: s.ClientURL(), nc: nc, js: js}
}

// result is what one busctl run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// busctl runs the CLI in-process against the bus.
func (b *bus) busctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := busctl.Execute(context.Background(), append([]string{"--server", b.url}, args...), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustRun runs busctl and fails the test unless it exits 0.
func (b *bus) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := b.busctl(t, args...)
	if r.code != 0 {
		t.Fatalf("busctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fakeBroker answers the broker API endpoints under "plugbus" with the
// replies set per endpoint and records every request body.
type fakeBroker struct {
	mu      sync.Mutex
	replies map[string]func(*wire.Request)
	got     map[string][][]byte
}

var allEndpoints = []string{
	schemas.APIPluginsRegister, schemas.APIPluginsList, schemas.APIPluginsGet, schemas.APIPluginsConfig,
	schemas.APIPluginsUnregister, schemas.APIJobsDeploy, schemas.APIJobsDelete, schemas.APIJobsList, schemas.APIJobsGet,
	schemas.APIMachinesAction, schemas.APIMachinesGet, schemas.APIMachinesList, schemas.APIMachinesSetParam,
	schemas.APIAlertsFire, schemas.APIAlertsResolve, schemas.APIHooksList,
	schemas.APIHostsList, schemas.APIHostsGet, schemas.APIPluginsEnable, schemas.APIPluginsDisable, schemas.APIPluginsRestart,
}

func (b *bus) fakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	fb := &fakeBroker{replies: map[string]func(*wire.Request){}, got: map[string][][]byte{}}
	svc, err := wire.NewService(b.nc, wire.Config{Name: "fake-broker", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	for _, ep := range allEndpoints {
		ep := ep
		err := svc.AddEndpoint(wire.Endpoint{Name: strings.ReplaceAll(ep, ".", "_"), Concurrency: 16, Handler: func(_ context.Context, req *wire.Request) {
			fb.mu.Lock()
			fb.got[ep] = append(fb.got[ep], append([]byte(nil), req.Data()...))
			reply := fb.replies[ep]
			fb.mu.Unlock()
			if reply == nil {
				_ = req.Reply(nil, schemas.Errorf(schemas.CodeInternal, "", "fake broker: no reply set for %s", ep))
				return
			}
			reply(req)
		}, Subject: scopedSubject("plugbus", ep)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The subscriptions must reach the server before another connection
	// sends requests.
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return fb
}

func (fb *fakeBroker) reply(endpoint string, resp any) {
	fb.set(endpoint, func(req *wire.Request) { _ = req.Reply(resp, nil) })
}

func (fb *fakeBroker) fail(endpoint string, e *schemas.Error) {
	fb.set(endpoint, func(req *wire.Request) { _ = req.Reply(nil, e) })
}

func (fb *fakeBroker) set(endpoint string, h func(*wire.Request)) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.replies[endpoint] = h
}

// requests returns the request bodies received on endpoint.
func (fb *fakeBroker) requests(endpoint string) [][]byte {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.got[endpoint]
}

// lastRequest decodes the one request received on endpoint into v.
func (fb *fakeBroker) lastRequest(t *testing.T, endpoint string, v any) {
	t.Helper()
	reqs := fb.requests(endpoint)
	if len(reqs) != 1 {
		t.Fatalf("%d requests on %s, want 1", len(reqs), endpoint)
	}
	dec := json.NewDecoder(bytes.NewReader(reqs[0]))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("request on %s: %v: %s", endpoint, err, reqs[0])
	}
}

// newEvent builds a core CloudEvent with JSON data.
func newEvent(t *testing.T, id, typ string, data any) *event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetSource("/plugbus/broker")
	e.SetType(typ)
	e.SetTime(time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC))
	e.SetDataSchema(schemas.EventSchemaID(typ))
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return &e
}

// createStream creates a stream over subjects.
//
// The bus's own streams are the broker's (ensureBroker), as busctl reads
// them through it.
func (b *bus) createStream(t *testing.T, name string, subjects ...string) jetstream.Stream {
	t.Helper()
	if slices.Contains(schemas.ReadableStreams, name) {
		b.ensureBroker(t)
		s, err := b.js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, err := b.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: subjects})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publishEvent publishes e on its core event subject in binary mode.
func (b *bus) publishEvent(t *testing.T, e *event.Event) {
	t.Helper()
	msg, err := wire.EncodeEvent(context.Background(), wire.EventSubject("plugbus", e.Type()), e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer = testnats.SyncBuffer

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cenatsEncode(e *event.Event, subject string) (*nats.Msg, error) {
	return wire.EncodeEvent(context.Background(), subject, e)
}

// scopedSubject is an endpoint's subject as the broker serves it: with a
// wildcard for the caller's name on a scoped endpoint.
func scopedSubject(prefix, endpoint string) string {
	if schemas.IsScoped(endpoint) {
		return wire.APISubject(prefix, endpoint+".*")
	}
	return wire.APISubject(prefix, endpoint)
}
