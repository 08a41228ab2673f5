package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// ingressClients are the concurrency levels of the API ingress case.
var ingressClients = []int{1, 16}

// runIngress: jobs.deploy and alerts.fire requests per second from 1 and 16
// concurrent clients (each on its own loopback TCP connection, as busctl or
// a CI job would be), vs raw request/reply to a responder on an in-process
// connection (where the broker sits) answering the same reply bytes.
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
		rawSubject := "bench.raw.ingress." + ep.name
		if err := rawResponder(bus, rawSubject, sample.Data); err != nil {
			return err
		}
		for _, conc := range ingressClients {
			m := r.metric(fmt.Sprintf("%s, %d client(s)", ep.name, conc), "req/s", true, nil)
			m.Note = "raw: request/reply to a responder answering the same reply bytes"
			for run := 0; run < r.cfg.Runs; run++ {
				if r.raw() {
					v, err := requestRate(ctx, clients[:conc], rawSubject, ep.body, dur)
					if err != nil {
						return fmt.Errorf("raw %s: %w", ep.name, err)
					}
					m.AddRaw(v)
				}
				if r.bus() {
					v, err := requestRate(ctx, clients[:conc], subject, ep.body, dur)
					if err != nil {
						return fmt.Errorf("%s: %w", ep.name, err)
					}
					m.AddBus(v)
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
