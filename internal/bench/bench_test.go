package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// The tests below are quick checks of the measuring code itself; the
// benchmarks (go test -run ^$ -bench . ./internal/bench) are the hot paths
// side by side: raw NATS vs plugbus doing the same job.

func TestMedianAndPercentiles(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Fatalf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Fatalf("median even = %v", got)
	}
	l := NewLatencies(100)
	for i := 100; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Microsecond}, {99, 99 * time.Microsecond}, {99.9, 100 * time.Microsecond}, {100, 100 * time.Microsecond}} {
		if got := l.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestRecord(t *testing.T) {
	m := &Metric{Name: "x", Unit: "events/s", HigherIsBetter: true, Target: &Target{Kind: "ratio_min", Value: 0.85}}
	for _, v := range []float64{100, 120, 110} {
		m.AddRaw(v)
	}
	for _, v := range []float64{90, 99, 95} {
		m.AddBus(v)
	}
	r := m.Record()
	if *r.Raw != 110 || *r.Bus != 95 || *r.Min != 90 || *r.Max != 99 || r.Runs != 3 {
		t.Fatalf("record = %+v", r)
	}
	if *r.Pass != (95.0/110 >= 0.85) {
		t.Fatalf("pass = %v for ratio %v", *r.Pass, *r.Ratio)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	_ = json.Unmarshal(b, &back)
	for _, k := range []string{"name", "unit", "raw", "bus", "ratio", "higher_is_better", "runs", "min", "max"} {
		if _, ok := back[k]; !ok {
			t.Errorf("record JSON lacks %q: %s", k, b)
		}
	}
}

func TestUpdateDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "perf.md")
	doc := "# Perf\n\n" + DocTableStart + "\nold table\n" + DocTableEnd + "\n\nanalysis\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Metric{Case: "publish", Name: "publish 512B inproc", Unit: "events/s", HigherIsBetter: true}
	m.AddRaw(100)
	m.AddBus(90)
	rep := &Report{Mode: "quick", Runs: 1, Records: []Record{m.Record()}}
	if err := rep.UpdateDoc(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	if strings.Contains(got, "old table") || !strings.Contains(got, "| publish | publish 512B inproc |") ||
		!strings.HasSuffix(got, DocTableEnd+"\n\nanalysis\n") {
		t.Fatalf("doc after update:\n%s", got)
	}
}

func TestPayloads(t *testing.T) {
	for _, size := range []int{512, 4096} {
		d := jobData(size, 42)
		b, _ := json.Marshal(d)
		if len(b) != size {
			t.Errorf("jobData(%d) encodes to %d bytes", size, len(b))
		}
		if seqOf(b) != 42 {
			t.Errorf("seqOf = %d", seqOf(b))
		}
		msg, err := encodeCore("plugbus", schemas.TypeJobDeployed, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wire.DecodeEvent(context.Background(), rawCopy(msg)); err != nil {
			t.Fatalf("raw copy is not a CloudEvent: %v", err)
		}
	}
	if _, err := encodeCore("plugbus", schemas.TypeAlertFired, alertData(7)); err != nil {
		t.Fatal(err)
	}
}

// benchBus starts a bus for a benchmark.
func benchBus(b *testing.B) *Bus {
	b.Helper()
	bus, err := StartBus(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bus.Close)
	return bus
}

// BenchmarkEventEncode is the CPU the broker spends per core event before
// it reaches the wire (schema validation, CloudEvent build, binary-mode
// encoding), against the raw client copying the encoded message.
func BenchmarkEventEncode(b *testing.B) {
	data := jobData(512, 0)
	b.Run("raw", func(b *testing.B) {
		tmpl, err := encodeCore("plugbus", schemas.TypeJobDeployed, data)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			_ = rawCopy(tmpl)
		}
	})
	b.Run("bus", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := broker.NewEvent(schemas.TypeJobDeployed, data)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := wire.EncodeEvent(context.Background(), "plugbus.evt.job.v1.deployed", e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEventEncodeWhatIf prices the fixes proposed in
// docs/performance.md for broker.NewEvent and wire.Encode: the same event
// without the per-event schema validation, and with the binary-mode
// headers written directly instead of through the CloudEvents binding.
func BenchmarkEventEncodeWhatIf(b *testing.B) {
	data := jobData(512, 0)
	eventType := schemas.TypeJobDeployed
	b.Run("no-validation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := event.New()
			e.SetID(uuid.NewString())
			e.SetSource(broker.Source)
			e.SetType(eventType)
			e.SetTime(time.Now().UTC())
			e.SetDataSchema(schemas.EventSchemaID(eventType))
			if err := e.SetData(event.ApplicationJSON, data); err != nil {
				b.Fatal(err)
			}
			if _, err := wire.EncodeEvent(context.Background(), "plugbus.evt.job.v1.deployed", &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("no-validation-direct-headers", func(b *testing.B) {
		b.ReportAllocs()
		schemaID := schemas.EventSchemaID(eventType)
		for b.Loop() {
			body, err := json.Marshal(data)
			if err != nil {
				b.Fatal(err)
			}
			id := uuid.NewString()
			h := make(nats.Header, 10)
			h["ce-specversion"] = []string{"1.0"}
			h["ce-id"] = []string{id}
			h["ce-source"] = []string{broker.Source}
			h["ce-type"] = []string{eventType}
			h["ce-time"] = []string{time.Now().UTC().Format(time.RFC3339Nano)}
			h["ce-datacontenttype"] = []string{event.ApplicationJSON}
			h["ce-dataschema"] = []string{schemaID}
			h["Content-Type"] = []string{event.ApplicationJSON}
			h[jetstream.MsgIDHeader] = []string{id}
			_ = &nats.Msg{Subject: "plugbus.evt.job.v1.deployed", Header: h, Data: body}
		}
	})
}

// BenchmarkEventDecode is what the SDK does per delivery before the handler
// runs, against reading the raw message.
func BenchmarkEventDecode(b *testing.B) {
	msg, err := encodeCore("plugbus", schemas.TypeJobDeployed, jobData(512, 0))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if seqOf(msg.Data) < 0 {
				b.Fatal("no seq")
			}
		}
	})
	b.Run("bus", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wire.DecodeEvent(context.Background(), &nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: msg.Data}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPublish: one synchronous publish of a 512 B core event,
// in-process: raw PublishMsg of the encoded bytes vs the broker's
// Publisher.
func BenchmarkPublish(b *testing.B) {
	bus := benchBus(b)
	js, _, err := bus.JetStream(InProcess, "bench")
	if err != nil {
		b.Fatal(err)
	}
	data := jobData(512, 0)
	tmpl, err := encodeCore(bus.Prefix, schemas.TypeJobDeployed, data)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := js.PublishMsg(ctx, rawCopy(tmpl)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := js.PublishMsgAsync(rawCopy(tmpl)); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
	})
	pub := realPublisher(bus.Broker)
	if pub == nil {
		pub = mirrorPublisher{js: js, prefix: bus.Prefix}
	}
	b.Run("bus", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pub.Publish(ctx, schemas.TypeJobDeployed, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDeliver: one event through a durable consumer to a handler over
// loopback TCP, raw pull consumer vs SDK plugin (b.N events pre-filled).
func BenchmarkDeliver(b *testing.B) {
	bus := benchBus(b)
	js, _, err := bus.JetStream(InProcess, "prefill")
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := encodeCore(bus.Prefix, schemas.TypeJobDeployed, jobData(512, 0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	subject := wire.EventSubject(bus.Prefix, schemas.TypeJobDeployed)
	round := 0
	b.Run("raw", func(b *testing.B) {
		round++
		if err := purge(ctx, js, subject); err != nil {
			b.Fatal(err)
		}
		if err := prefill(ctx, js, tmpl, b.N); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		if err := rawConsume(ctx, bus, fmt.Sprintf("bench-raw-%d", round), newCounter(b.N), time.Minute, true, 0); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("bus", func(b *testing.B) {
		round++
		if err := purge(ctx, js, subject); err != nil {
			b.Fatal(err)
		}
		if err := prefill(ctx, js, tmpl, b.N); err != nil {
			b.Fatal(err)
		}
		c := newCounter(b.N)
		p, err := sdk.New(consumerManifest(fmt.Sprintf("bench-%d", round), schemas.TypeJobDeployed, schemas.StartAll),
			sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
		if err != nil {
			b.Fatal(err)
		}
		p.HandleEvent(schemas.TypeJobDeployed, func(context.Context, event.Event) error { c.hit(); return nil })
		b.ResetTimer()
		stop, err := bus.StartPlugin(p, TCP)
		if err != nil {
			b.Fatal(err)
		}
		defer stop()
		if err := c.wait(ctx, time.Minute); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkAction: a raw request/reply vs a machine action through the
// broker to an SDK plugin and back, in-process.
func BenchmarkAction(b *testing.B) {
	bus := benchBus(b)
	client, err := bus.Connect(InProcess, "client")
	if err != nil {
		b.Fatal(err)
	}
	p, err := sdk.New(schemas.Manifest{Name: "bench-action", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "noop", Model: "machines"}}},
		sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
	if err != nil {
		b.Fatal(err)
	}
	p.HandleAction("noop", func(context.Context, *sdk.Action) (any, error) { return nil, nil })
	if _, err := bus.StartPlugin(p, InProcess); err != nil {
		b.Fatal(err)
	}
	body := mustJSON(schemas.MachineActionRequest{Machine: "m1", Command: "noop"})
	if err := rawResponder(bus, "bench.echo", []byte(`{"result":null}`)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, subject string }{
		{"raw", "bench.echo"},
		{"bus", wire.APISubject(bus.Prefix, schemas.APIMachinesAction)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				msg, err := client.Request(c.subject, body, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if msg.Header.Get(schemas.HeaderErrorCode) != "" {
					b.Fatalf("%s", msg.Data)
				}
			}
		})
	}
}

// BenchmarkRegistry: registry operations with 0 and 1,000 plugins already
// registered: registering one more (init, config, verify, record writes),
// plugins.list, hooks.list and a machine action routed through the
// registry; raw: a KV put of a plugin record. Setting up the 1,000 takes a
// few seconds.
func BenchmarkRegistry(b *testing.B) {
	ctx := context.Background()
	for _, pre := range []int{0, 1000} {
		b.Run(fmt.Sprintf("%d-registered", pre), func(b *testing.B) {
			bus := benchBus(b)
			nc, err := bus.Connect(InProcess, "plugins")
			if err != nil {
				b.Fatal(err)
			}
			if err := parallel(ctx, pre, registerConcurrency, func(i int) error {
				m := scaleManifest(i)
				if _, err := startFakePlugin(nc, bus.Prefix, m, continueReply); err != nil {
					return err
				}
				_, err := register(ctx, nc, bus.Prefix, m)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			act := actionManifest("bench-action")
			if _, err := startFakePlugin(nc, bus.Prefix, act, continueReply); err != nil {
				b.Fatal(err)
			}
			if _, err := register(ctx, nc, bus.Prefix, act); err != nil {
				b.Fatal(err)
			}
			i := pre
			b.Run("register-one", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					m := scaleManifest(i)
					i++
					if _, err := startFakePlugin(nc, bus.Prefix, m, continueReply); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if _, err := register(ctx, nc, bus.Prefix, m); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, c := range []struct {
				name, endpoint string
				body           any
			}{
				{"plugins.list", schemas.APIPluginsList, schemas.PluginListRequest{}},
				{"hooks.list", schemas.APIHooksList, schemas.HookListRequest{}},
				{"machines.action", schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "noop"}},
			} {
				b.Run(c.name, func(b *testing.B) {
					body := mustJSON(c.body)
					subject := wire.APISubject(bus.Prefix, c.endpoint)
					for b.Loop() {
						msg, err := nc.Request(subject, body, 30*time.Second)
						if err != nil {
							b.Fatal(err)
						}
						if msg.Header.Get(schemas.HeaderErrorCode) != "" {
							b.Fatalf("%s", msg.Data)
						}
					}
				})
			}
		})
	}
	b.Run("raw-kv-put", func(b *testing.B) {
		bus := benchBus(b)
		js, _, err := bus.JetStream(InProcess, "raw")
		if err != nil {
			b.Fatal(err)
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_registry", History: 5, Storage: jetstream.FileStorage})
		if err != nil {
			b.Fatal(err)
		}
		rec := mustJSON(schemas.PluginRecord{Name: "scale-0000", Version: "1.0.0", State: schemas.StateActive, Manifest: scaleManifest(0)})
		i := 0
		for b.Loop() {
			i++
			if _, err := kv.Put(ctx, fmt.Sprintf("scale-%04d", i), rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDeliverPull isolates what limits the SDK's delivery rate: a raw
// pull consumer with the client's default pull size, with the SDK's pull
// size (8), and each of those plus the SDK's InProgress call per message.
func BenchmarkDeliverPull(b *testing.B) {
	bus := benchBus(b)
	js, _, err := bus.JetStream(InProcess, "prefill")
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := encodeCore(bus.Prefix, schemas.TypeJobDeployed, jobData(512, 0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	subject := wire.EventSubject(bus.Prefix, schemas.TypeJobDeployed)
	round := 0
	for _, c := range []struct {
		name       string
		batch      int
		inProgress bool
	}{{"default", 0, false}, {"default+inprogress", 0, true}, {"batch8", 8, false}, {"batch8+inprogress", 8, true}, {"batch64+inprogress", 64, true}} {
		b.Run(c.name, func(b *testing.B) {
			round++
			if err := purge(ctx, js, subject); err != nil {
				b.Fatal(err)
			}
			if err := prefill(ctx, js, tmpl, b.N); err != nil {
				b.Fatal(err)
			}
			cjs, nc, err := bus.JetStream(TCP, "raw-consumer")
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			cc := broker.ConsumerConfig(bus.Prefix, consumerManifest(fmt.Sprintf("pull-%d", round), schemas.TypeJobDeployed, schemas.StartAll))
			cons, err := cjs.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, cc)
			if err != nil {
				b.Fatal(err)
			}
			var opts []jetstream.PullConsumeOpt
			if c.batch > 0 {
				opts = append(opts, jetstream.PullMaxMessages(c.batch))
			}
			cnt := newCounter(b.N)
			b.ResetTimer()
			cctx, err := cons.Consume(func(msg jetstream.Msg) {
				if c.inProgress {
					_ = msg.InProgress()
				}
				cnt.hit()
				_ = msg.Ack()
			}, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer cctx.Stop()
			if err := cnt.wait(ctx, time.Minute); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkAPIValidation is the schema work the broker does on every
// jobs.deploy besides the JetStream round trips: the request decoded
// against its schema (vs plain json.Unmarshal) and the reply validated
// against its schema before it is sent (vs the json.Marshal it needs
// anyway).
func BenchmarkAPIValidation(b *testing.B) {
	req := mustJSON(schemas.JobDeployRequest{Name: "demo", Version: "v1", Image: "registry.example.com/bench/app:1.0.0",
		Env: map[string]string{"LOG_LEVEL": "info"}, Labels: map[string]string{"team": "bench"}})
	resp := schemas.JobResponse{Job: schemas.Job{Name: "demo", Version: "v1", Image: "registry.example.com/bench/app:1.0.0",
		Env: map[string]string{"LOG_LEVEL": "info"}, Labels: map[string]string{"team": "bench"}, Status: schemas.JobDeployed, DeployedAt: fixedTime},
		EventID: "0b8f1c1e-3f5e-4a8e-9f5e-0d3c9a1f2b11"}
	b.Run("request/unmarshal", func(b *testing.B) {
		for b.Loop() {
			var v schemas.JobDeployRequest
			if err := json.Unmarshal(req, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("request/schemas.Decode", func(b *testing.B) {
		for b.Loop() {
			var v schemas.JobDeployRequest
			if err := schemas.Decode(schemas.APIJobDeployRequest, req, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reply/marshal", func(b *testing.B) {
		for b.Loop() {
			_ = mustJSON(resp)
		}
	})
	b.Run("reply/ValidateValue", func(b *testing.B) {
		for b.Loop() {
			if err := schemas.ValidateValue(schemas.APIJobResponse, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIngress: jobs.deploy through the broker against a raw responder
// doing the same work by hand (decode, KV get, KV create, JetStream publish
// with its ack), one client in-process. Allocations are the whole
// process's (broker, server and client).
func BenchmarkIngress(b *testing.B) {
	bus := benchBus(b)
	ctx := context.Background()
	client, err := bus.Connect(InProcess, "client")
	if err != nil {
		b.Fatal(err)
	}
	if err := rawWorkResponder(ctx, bus, "bench.raw.work", schemas.APIJobsDeploy, false, []byte(`{}`)); err != nil {
		b.Fatal(err)
	}
	seq := 0
	for _, c := range []struct{ name, subject string }{
		{"raw", "bench.raw.work"},
		{"bus", wire.APISubject(bus.Prefix, schemas.APIJobsDeploy)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				seq++
				body := mustJSON(schemas.JobDeployRequest{Name: "web", Version: fmt.Sprintf("v%d", seq), Image: "registry.example.com/bench/app:1.0.0"})
				msg, err := client.Request(c.subject, body, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if msg.Header.Get(schemas.HeaderErrorCode) != "" {
					b.Fatalf("%s", msg.Data)
				}
			}
		})
	}
}
