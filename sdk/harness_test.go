package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// The SDK is tested against a real in-process nats-server and a small fake
// broker that speaks the protocol the SDK relies on (register lifecycle,
// config bucket, plugin records, durable consumer), so these tests do not
// depend on the real broker. sdk/plugintest runs plugins against the real
// one.

const testPrefix = "plugbus"

func startServer(t testing.TB) *server.Server { return testnats.Start(t, true) }

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fakeBroker struct {
	t       testing.TB
	nc      *nats.Conn
	js      jetstream.JetStream
	plugins jetstream.KeyValue
	configs jetstream.KeyValue

	// strayTypes are added to every consumer's filter, as if the consumer
	// had been made for another manifest.
	strayTypes []string

	mu        sync.Mutex
	registers map[string]int // register requests by instance id
}

// newFakeBroker creates the stream and buckets and starts answering
// plugins.register and plugins.config.
func newFakeBroker(t testing.TB, url string) *fakeBroker {
	t.Helper()
	b := newFakeStore(t, url)
	b.serve()
	return b
}

// newFakeStore creates the stream and buckets without answering the API.
func newFakeStore(t testing.TB, url string) *fakeBroker {
	t.Helper()
	nc := connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: schemas.StreamEvents, Subjects: []string{testPrefix + ".evt.>"}, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{t: t, nc: nc, js: js, registers: map[string]int{}}
	if b.plugins, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schemas.BucketPlugins}); err != nil {
		t.Fatal(err)
	}
	if b.configs, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schemas.BucketConfigs}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *fakeBroker) serve() {
	svc, err := wire.NewService(b.nc, wire.Config{Name: "fake-broker", Version: "0.0.1"})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	for endpoint, h := range map[string]func(*wire.Request){
		schemas.APIPluginsRegister: b.handleRegister,
		schemas.APIPluginsConfig:   b.handleConfig,
	} {
		if err := svc.AddEndpoint(wire.Endpoint{Name: strings.ReplaceAll(endpoint, ".", "_"), Subject: scopedSubject(testPrefix, endpoint), Concurrency: 16,
			Handler: func(_ context.Context, req *wire.Request) { h(req) }}); err != nil {
			b.t.Fatal(err)
		}
	}
}

func (b *fakeBroker) registerCount(instance string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.registers[instance]
}

func (b *fakeBroker) handleRegister(req *wire.Request) {
	var in schemas.RegisterRequest
	if err := json.Unmarshal(req.Data(), &in); err != nil {
		_ = req.Reply(nil, schemas.Errorf(schemas.CodeBadRequest, "", "%v", err))
		return
	}
	if in.Manifest.Name == "refused" {
		_ = req.Reply(nil, schemas.Errorf(schemas.CodeInvalidField, "manifest.name", "name is reserved"))
		return
	}
	b.mu.Lock()
	b.registers[in.InstanceID]++
	b.mu.Unlock()
	m := in.Manifest
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.Events != nil {
		var filters []string
		for _, typ := range append(append([]string(nil), m.Events.Types...), b.strayTypes...) {
			filters = append(filters, wire.EventSubject(testPrefix, typ))
		}
		maxDeliver := m.Events.MaxDeliver
		if maxDeliver == 0 {
			maxDeliver = 5
		}
		if _, err := b.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
			Durable: schemas.ConsumerName(m.Name), FilterSubjects: filters, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: m.Events.AckWait.D(), MaxDeliver: maxDeliver,
		}); err != nil {
			_ = req.Reply(nil, schemas.Errorf(schemas.CodeInternal, "", "consumer: %v", err))
			return
		}
	}
	cfg := in.Config
	if e, err := b.configs.Get(ctx, m.Name); err == nil {
		cfg = nil
		_ = json.Unmarshal(e.Value(), &cfg)
	}
	rec := b.lifecycle(ctx, m, cfg)
	_ = req.Reply(schemas.RegisterResponse{Plugin: rec, Changed: true}, nil)
}

// lifecycle runs init, config and verify and stores the record.
func (b *fakeBroker) lifecycle(ctx context.Context, m schemas.Manifest, cfg map[string]any) schemas.PluginRecord {
	rec := schemas.PluginRecord{Name: m.Name, Version: m.Version, Manifest: m, State: schemas.StateActive, Config: cfg}
	fail := func(e error) schemas.PluginRecord {
		rec.State = schemas.StateError
		rec.LastError = schemas.AsError(e)
		b.putRecord(rec)
		return rec
	}
	for _, k := range m.RequiredParams {
		if _, ok := cfg[k]; !ok {
			return fail(schemas.Errorf(schemas.CodeMissingParam, "config."+k, "required param %q is not set", k))
		}
	}
	var initResp schemas.InitResponse
	if err := wire.Call(ctx, b.nc, wire.PluginSubject(testPrefix, m.Name, schemas.VerbInit), schemas.InitRequest{Name: m.Name, Version: m.Version}, &initResp); err != nil {
		return fail(err)
	}
	rec.Metadata = initResp.Metadata
	if cfg == nil {
		cfg = map[string]any{}
	}
	if err := wire.Call(ctx, b.nc, wire.PluginSubject(testPrefix, m.Name, schemas.VerbConfig), schemas.ConfigRequest{Config: cfg}, nil); err != nil {
		return fail(err)
	}
	data, _ := json.Marshal(cfg)
	if _, err := b.configs.Put(ctx, m.Name, data); err != nil {
		return fail(err)
	}
	var vr schemas.VerifyResponse
	if err := wire.Call(ctx, b.nc, wire.PluginSubject(testPrefix, m.Name, schemas.VerbVerify), schemas.VerifyRequest{}, &vr); err != nil {
		return fail(err)
	}
	if !vr.Ready {
		return fail(schemas.Errorf(schemas.CodePluginError, "", "%s", vr.Message))
	}
	b.putRecord(rec)
	return rec
}

func (b *fakeBroker) handleConfig(req *wire.Request) {
	var in schemas.PluginConfigRequest
	if err := json.Unmarshal(req.Data(), &in); err != nil {
		_ = req.Reply(nil, schemas.Errorf(schemas.CodeBadRequest, "", "%v", err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := b.plugins.Get(ctx, in.Name)
	if err != nil {
		_ = req.Reply(nil, schemas.Errorf(schemas.CodeNotFound, "name", "no plugin %s", in.Name))
		return
	}
	var rec schemas.PluginRecord
	_ = json.Unmarshal(e.Value(), &rec)
	cfg := map[string]any{}
	if ce, err := b.configs.Get(ctx, in.Name); err == nil {
		_ = json.Unmarshal(ce.Value(), &cfg)
	}
	maps.Copy(cfg, in.Set)
	rec = b.lifecycle(ctx, rec.Manifest, cfg)
	_ = req.Reply(rec, nil)
}

func (b *fakeBroker) putRecord(rec schemas.PluginRecord) {
	rec.UpdatedAt = time.Now()
	data, _ := json.Marshal(rec)
	if _, err := b.plugins.Put(context.Background(), rec.Name, data); err != nil {
		b.t.Errorf("put record: %v", err)
	}
}

func (b *fakeBroker) setConfig(t testing.TB, name string, set map[string]any) schemas.PluginRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rec schemas.PluginRecord
	if err := wire.Call(ctx, b.nc, wire.APISubject(testPrefix, schemas.APIPluginsConfig), schemas.PluginConfigRequest{Name: name, Set: set}, &rec); err != nil {
		t.Fatalf("set config: %v", err)
	}
	return rec
}

// publish publishes a core CloudEvent of type typ with JSON data.
func (b *fakeBroker) publish(t testing.TB, id, typ string, data any) {
	t.Helper()
	b.publishOn(t, wire.EventSubject(testPrefix, typ), id, typ, wire.BrokerSource, data)
}

// publishOn publishes a CloudEvent with whatever subject, type and source
// it is given.
func (b *fakeBroker) publishOn(t testing.TB, subject, id, typ, source string, data any) {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(source)
	e.SetTime(time.Now())
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	msg, err := wire.EncodeEvent(context.Background(), subject, &e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

// publishRaw publishes bytes that are not a CloudEvent.
func (b *fakeBroker) publishRaw(t testing.TB, subject string, data []byte) {
	t.Helper()
	if _, err := b.js.Publish(context.Background(), subject, data); err != nil {
		t.Fatal(err)
	}
}

// terminations collects the reasons of terminated deliveries of a consumer.
type terminations struct {
	mu      sync.Mutex
	reasons []string
}

func (b *fakeBroker) watchTerminations(t testing.TB, consumer string) *terminations {
	t.Helper()
	tr := &terminations{}
	sub, err := b.nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+schemas.StreamEvents+"."+consumer, func(m *nats.Msg) {
		var adv struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(m.Data, &adv)
		tr.mu.Lock()
		tr.reasons = append(tr.reasons, adv.Reason)
		tr.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return tr
}

func (tr *terminations) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.reasons...)
}

// running is a plugin started by runPlugin.
type running struct {
	p    *sdk.Plugin
	nc   *nats.Conn
	stop func() error
}

// runPlugin runs p on a connection of its own, waits until it is ready and
// stops it when the test ends.
func runPlugin(t testing.TB, url string, p *sdk.Plugin) *running {
	t.Helper()
	r := startPlugin(t, url, p)
	select {
	case <-p.Ready():
	case <-time.After(15 * time.Second):
		t.Fatalf("plugin %s not ready", p.Name())
	}
	return r
}

func startPlugin(t testing.TB, url string, p *sdk.Plugin) *running {
	t.Helper()
	nc := connect(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nc) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				runErr = fmt.Errorf("plugin %s did not stop", p.Name())
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return &running{p: p, nc: nc, stop: stop}
}

func newPlugin(t testing.TB, m schemas.Manifest, opts ...sdk.Option) *sdk.Plugin {
	t.Helper()
	p, err := sdk.New(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// purge empties the event stream.
func (b *fakeBroker) purge() error {
	s, err := b.js.Stream(context.Background(), schemas.StreamEvents)
	if err != nil {
		return err
	}
	return s.Purge(context.Background())
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer = testnats.SyncBuffer

// scopedSubject is an endpoint's subject as the broker serves it: with a
// wildcard for the caller's name on a scoped endpoint.
func scopedSubject(prefix, endpoint string) string {
	if schemas.IsScoped(endpoint) {
		return wire.APISubject(prefix, endpoint+".*")
	}
	return wire.APISubject(prefix, endpoint)
}
