package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/broker"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// ingressClients are the concurrency levels of the API ingress case.
var ingressClients = []int{1, 16}

// runIngress: jobs.deploy and alerts.fire requests per second from 1 and 16
// concurrent clients (each on its own loopback TCP connection, as busctl or
// a CI job would be), vs a raw responder on an in-process connection (where
// the broker sits) doing the same work by hand: decode the request, read
// the record's key from a KV bucket, create it, publish the event to the
// event stream and wait for its ack, answer the same reply bytes (a
// goroutine per request, at most the broker's MaxConcurrency at once). A
// second raw figure also clears an outbox (a second KV write), as the
// broker's crash-safe commit does (broker/commit.go); a bare echo is kept
// for reference.
func runIngress(ctx context.Context, r *runner) error {
	bus, err := StartBus(ctx)
	if err != nil {
		return err
	}
	defer bus.Close()
	dur := r.dur(300*time.Millisecond, time.Second)
	maxClients := ingressClients[len(ingressClients)-1]
	clients := make([]*nats.Conn, maxClients)
	for i := range clients {
		if clients[i], err = bus.Connect(TCP, fmt.Sprintf("ingress-client-%d", i)); err != nil {
			return err
		}
	}
	var seq atomic.Int64
	endpoints := []struct {
		name string
		body func(client int) []byte
	}{
		{schemas.APIJobsDeploy, func(client int) []byte {
			return mustJSON(schemas.JobDeployRequest{Name: fmt.Sprintf("ingress-%d", client), Version: fmt.Sprintf("v%d", seq.Add(1)),
				Image: "registry.example.com/bench/app:1.0.0", Env: map[string]string{"LOG_LEVEL": "info"}, Labels: map[string]string{"team": "bench"}})
		}},
		{schemas.APIAlertsFire, func(int) []byte {
			return mustJSON(schemas.AlertFireRequest{Severity: "warning", Summary: "benchmark alert", Labels: map[string]string{"host": "m1"}})
		}},
	}
	for _, ep := range endpoints {
		subject := wire.APISubject(bus.Prefix, ep.name)
		sample, err := clients[0].Request(subject, ep.body(0), 10*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", ep.name, err)
		}
		if code := sample.Header.Get(schemas.HeaderErrorCode); code != "" {
			return fmt.Errorf("%s: %s: %s", ep.name, code, sample.Data)
		}
		echoSubject := "bench.raw.ingress.echo." + ep.name
		if err := rawResponder(bus, echoSubject, sample.Data); err != nil {
			return err
		}
		rawSubject := "bench.raw.ingress.work." + ep.name
		if err := rawWorkResponder(ctx, bus, rawSubject, ep.name, false, sample.Data); err != nil {
			return err
		}
		outboxSubject := "bench.raw.ingress.outbox." + ep.name
		if err := rawWorkResponder(ctx, bus, outboxSubject, ep.name, true, sample.Data); err != nil {
			return err
		}
		for _, conc := range ingressClients {
			m := r.metric(fmt.Sprintf("%s, %d client(s)", ep.name, conc), "req/s", true, &Target{Kind: "ratio_min", Value: 0.8})
			m.Note = "raw: request/reply to a responder doing decode + KV get + KV create + JetStream publish (ack awaited) + the same reply bytes"
			mo := r.metric(fmt.Sprintf("%s, %d client(s), raw with outbox clear", ep.name, conc), "req/s", true, nil)
			mo.Note = "raw: the same plus a second KV write (the outbox clear of the broker's commit)"
			me := r.metric(fmt.Sprintf("%s, %d client(s), raw bare echo", ep.name, conc), "req/s", true, nil)
			me.Note = "raw: request/reply to a responder answering the same reply bytes, no work (the earlier baseline)"
			for run := 0; run < r.cfg.Runs; run++ {
				if r.raw() {
					for _, x := range []struct {
						m       *Metric
						subject string
					}{{m, rawSubject}, {mo, outboxSubject}, {me, echoSubject}} {
						v, err := requestRate(ctx, clients[:conc], x.subject, ep.body, dur)
						if err != nil {
							return fmt.Errorf("raw %s: %w", ep.name, err)
						}
						x.m.AddRaw(v)
					}
				}
				if r.bus() {
					v, err := requestRate(ctx, clients[:conc], subject, ep.body, dur)
					if err != nil {
						return fmt.Errorf("%s: %w", ep.name, err)
					}
					m.AddBus(v)
					mo.AddBus(v)
					me.AddBus(v)
				}
			}
			r.logf("%s: raw %s bus %s req/s", m.Name, fmtNum(median(m.raw)), fmtNum(median(m.bus)))
		}
	}
	return nil
}

// requestRate has every client send requests one after another for dur
// and returns successful requests per second. Error replies fail the run.
func requestRate(ctx context.Context, clients []*nats.Conn, subject string, body func(client int) []byte, dur time.Duration) (float64, error) {
	start := time.Now()
	deadline := start.Add(dur)
	var ok atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i, nc := range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				msg, err := nc.Request(subject, body(i), 30*time.Second)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if code := msg.Header.Get(schemas.HeaderErrorCode); code != "" {
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %s", code, msg.Data))
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(ok.Load()) / time.Since(start).Seconds(), nil
}

// rawWorkResponder answers requests on subject doing by hand what the
// broker does for endpoint (jobs.deploy or alerts.fire): decode, KV get of
// the record's key (absent), KV create, JetStream publish of the event with
// its ack awaited, and with outbox a second KV write; then it answers
// reply. Each request runs on its own goroutine, at most
// broker.DefaultMaxConcurrency at once, as the broker's do.
func rawWorkResponder(ctx context.Context, bus *Bus, subject, endpoint string, outbox bool, reply []byte) error {
	nc, err := bus.Connect(InProcess, "raw-ingress")
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	bucket := "bench_raw_" + strings.ReplaceAll(endpoint, ".", "_")
	if outbox {
		bucket += "_outbox"
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1,
		Storage: jetstream.FileStorage, LimitMarkerTTL: time.Second})
	if err != nil {
		return err
	}
	eventType := schemas.TypeJobDeployed
	var eventData any = jobData(256, 0)
	if endpoint == schemas.APIAlertsFire {
		eventType, eventData = schemas.TypeAlertFired, alertData(0)
	}
	tmpl, err := encodeCore(bus.Prefix, eventType, eventData)
	if err != nil {
		return err
	}
	work := func(data []byte) error {
		var key string
		var record any
		if endpoint == schemas.APIAlertsFire {
			var req schemas.AlertFireRequest
			if err := json.Unmarshal(data, &req); err != nil {
				return err
			}
			key = nuid.Next()
			record = schemas.Alert{ID: key, Severity: req.Severity, Summary: req.Summary, Labels: req.Labels, Status: schemas.AlertFiring, FiredAt: time.Now().UTC()}
		} else {
			var req schemas.JobDeployRequest
			if err := json.Unmarshal(data, &req); err != nil {
				return err
			}
			key = req.Name + "/" + req.Version
			record = schemas.Job{Name: req.Name, Version: req.Version, Image: req.Image, Env: req.Env, Labels: req.Labels,
				Status: schemas.JobDeployed, DeployedAt: time.Now().UTC()}
		}
		if _, err := kv.Get(ctx, key); err == nil {
			return fmt.Errorf("key %s exists", key)
		}
		body, err := json.Marshal(record)
		if err != nil {
			return err
		}
		rev, err := kv.Create(ctx, key, body)
		if err != nil {
			return err
		}
		if _, err := js.PublishMsg(ctx, rawCopy(tmpl)); err != nil {
			return err
		}
		if outbox {
			if _, err := kv.Update(ctx, key, body, rev); err != nil {
				return err
			}
		}
		return nil
	}
	sem := make(chan struct{}, broker.DefaultMaxConcurrency)
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := work(m.Data); err != nil {
				_ = m.RespondMsg(wire.ReplyMsg(m.Reply, nil, err))
				return
			}
			_ = m.Respond(reply)
		}()
	}); err != nil {
		return err
	}
	return nc.Flush()
}
