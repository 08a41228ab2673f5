package wire_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func request(t *testing.T, nc *nats.Conn, subject string, v any) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw json.RawMessage
	err := wire.Call(ctx, nc, subject, v, &raw)
	return raw, err
}

func stats(t *testing.T, nc *nats.Conn, subject string) micro.Stats {
	t.Helper()
	msg, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func endpointStats(t *testing.T, st micro.Stats, name string) *micro.EndpointStats {
	t.Helper()
	for _, e := range st.Endpoints {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no endpoint %s in %+v", name, st)
	return nil
}

// STATS counts every error reply and the time from receipt to reply of
// concurrently handled requests, which micro cannot see when a handler
// answers from another goroutine.
func TestServiceStatsAreTruthful(t *testing.T) {
	nc := testnats.Connect(t, testnats.Start(t, false).ClientURL())
	svc, err := wire.NewService(nc, wire.Config{Name: "stats-test", Version: "1.0.0", Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })

	const good, bad = 7, 5
	release := make(chan struct{})
	var mu sync.Mutex
	var started int
	var handled time.Duration // sum over requests of the time inside the handler
	err = svc.AddEndpoint(wire.Endpoint{Name: "work", Subject: "test.work", Concurrency: good + bad,
		Handler: func(_ context.Context, req *wire.Request) {
			begin := time.Now()
			mu.Lock()
			started++
			mu.Unlock()
			<-release
			var in struct{ Fail bool }
			_ = json.Unmarshal(req.Data(), &in)
			mu.Lock()
			handled += time.Since(begin)
			mu.Unlock()
			if in.Fail {
				_ = req.Reply(nil, schemas.Errorf(schemas.CodeNotFound, "name", "no such thing"))
				return
			}
			_ = req.Reply(map[string]string{"ok": "yes"}, nil)
		}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, good+bad)
	for i := range good + bad {
		wg.Go(func() {
			_, errs[i] = request(t, nc, "test.work", map[string]bool{"Fail": i < bad})
		})
	}
	// Every request is inside its handler at once: they run concurrently.
	waitUntil(t, "all requests in their handlers", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return started == good+bad
	})
	close(release)
	wg.Wait()
	var failed int
	for _, err := range errs {
		if errors.Is(err, schemas.ErrNotFound) {
			failed++
		} else if err != nil {
			t.Errorf("unexpected error %v", err)
		}
	}
	if failed != bad {
		t.Errorf("%d requests failed, want %d", failed, bad)
	}

	for _, subject := range []string{"$SRV.STATS", "$SRV.STATS.stats-test", "$SRV.STATS.stats-test." + svc.ID()} {
		st := stats(t, nc, subject)
		if st.Type != micro.StatsResponseType || st.Name != "stats-test" || st.ID != svc.ID() {
			t.Errorf("%s: identity %+v", subject, st.ServiceIdentity)
		}
		e := endpointStats(t, st, "work")
		if e.NumRequests != good+bad || e.NumErrors != bad {
			t.Errorf("%s: requests %d errors %d, want %d and %d", subject, e.NumRequests, e.NumErrors, good+bad, bad)
		}
		if e.LastError != "not_found: no such thing" {
			t.Errorf("%s: last error %q", subject, e.LastError)
		}
		mu.Lock()
		inHandlers := handled
		mu.Unlock()
		// Processing time runs from receipt to reply, so it covers at
		// least the time spent in the handlers.
		if e.ProcessingTime < inHandlers {
			t.Errorf("%s: processing time %s is less than the %s spent in handlers", subject, e.ProcessingTime, inHandlers)
		}
		if e.AverageProcessingTime != e.ProcessingTime/time.Duration(e.NumRequests) {
			t.Errorf("%s: average %s of total %s over %d", subject, e.AverageProcessingTime, e.ProcessingTime, e.NumRequests)
		}
	}
}

func TestServiceDiscovery(t *testing.T) {
	nc := testnats.Connect(t, testnats.Start(t, false).ClientURL())
	svc, err := wire.NewService(nc, wire.Config{Name: "disco", Version: "2.1.0", Description: "discovery test",
		Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	if err := svc.AddEndpoint(wire.Endpoint{Name: "echo", Subject: "disco.echo", Metadata: map[string]string{"e": "1"},
		Handler: func(_ context.Context, r *wire.Request) { _ = r.Reply(json.RawMessage(r.Data()), nil) }}); err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"$SRV.PING", "$SRV.PING.disco", "$SRV.PING.disco." + svc.ID()} {
		msg, err := nc.Request(subject, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ping micro.Ping
		if err := json.Unmarshal(msg.Data, &ping); err != nil || ping.Type != micro.PingResponseType || ping.Name != "disco" ||
			ping.Version != "2.1.0" || ping.Metadata["k"] != "v" {
			t.Errorf("%s: %s (%v)", subject, msg.Data, err)
		}
	}
	msg, err := nc.Request("$SRV.INFO.disco", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Type != micro.InfoResponseType || info.Description != "discovery test" || len(info.Endpoints) != 1 ||
		info.Endpoints[0].Subject != "disco.echo" || info.Endpoints[0].QueueGroup != micro.DefaultQueueGroup ||
		info.Endpoints[0].Metadata["e"] != "1" {
		t.Errorf("info = %+v", info)
	}
}

func TestServiceRejectsBadConfig(t *testing.T) {
	nc := testnats.Connect(t, testnats.Start(t, false).ClientURL())
	for name, cfg := range map[string]wire.Config{
		"bad name":    {Name: "a.b", Version: "1.0.0"},
		"bad version": {Name: "ok", Version: "v1"},
	} {
		if _, err := wire.NewService(nc, cfg); !errors.Is(err, wire.ErrInvalidService) {
			t.Errorf("%s: error %v", name, err)
		}
	}
	svc, err := wire.NewService(nc, wire.Config{Name: "ok", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop(context.Background()) }()
	h := func(context.Context, *wire.Request) {}
	for name, ep := range map[string]wire.Endpoint{
		"bad name":   {Name: "a b", Subject: "x", Handler: h},
		"no subject": {Name: "x", Handler: h},
		"no handler": {Name: "x", Subject: "x"},
	} {
		if err := svc.AddEndpoint(ep); !errors.Is(err, wire.ErrInvalidService) {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

// A handler that returns without answering gets an internal error sent
// for it; the caller's deadline reaches the handler's context.
func TestServiceUnansweredAndDeadline(t *testing.T) {
	nc := testnats.Connect(t, testnats.Start(t, false).ClientURL())
	svc, err := wire.NewService(nc, wire.Config{Name: "silent", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	left := make(chan time.Duration, 1)
	if err := svc.AddEndpoint(wire.Endpoint{Name: "forget", Subject: "silent.forget", Concurrency: 4,
		Handler: func(ctx context.Context, _ *wire.Request) {
			dl, ok := ctx.Deadline()
			if !ok {
				left <- -1
				return
			}
			left <- time.Until(dl)
		}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = wire.Call(ctx, nc, "silent.forget", struct{}{}, nil)
	if !errors.Is(err, schemas.ErrInternal) {
		t.Errorf("error %v, want internal", err)
	}
	if d := <-left; d <= 0 || d > 3*time.Second {
		t.Errorf("handler deadline %s away, want within the caller's 3s", d)
	}
	if e := endpointStats(t, stats(t, nc, "$SRV.STATS.silent"), "forget"); e.NumErrors != 1 {
		t.Errorf("errors %d, want 1", e.NumErrors)
	}
}

// Stop answers what was received before it and takes nothing after.
func TestServiceStopDrains(t *testing.T) {
	srv := testnats.Start(t, false)
	nc := testnats.Connect(t, srv.ClientURL())
	client := testnats.Connect(t, srv.ClientURL())
	svc, err := wire.NewService(nc, wire.Config{Name: "drain", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	inside := make(chan struct{}, 64)
	release := make(chan struct{})
	if err := svc.AddEndpoint(wire.Endpoint{Name: "slow", Subject: "drain.slow", Concurrency: 64,
		Handler: func(_ context.Context, r *wire.Request) {
			inside <- struct{}{}
			<-release
			_ = r.Reply("done", nil)
		}}); err != nil {
		t.Fatal(err)
	}
	// The other connection's requests must find the subscription.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 3
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			results[i] = wire.Call(ctx, client, "drain.slow", struct{}{}, nil)
		})
	}
	for range n {
		<-inside
	}
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Stop(context.Background()) }()
	// Once the endpoint stopped taking requests, a new one finds nobody.
	// (A probe that still got in waits in a handler until its short
	// timeout; the three requests above wait far longer.)
	waitUntil(t, "the endpoint to stop taking requests", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return errors.Is(wire.Call(ctx, client, "drain.slow", struct{}{}, nil), schemas.ErrNoResponders)
	})
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v before the handlers finished", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
	wg.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
}

// OnReceive runs in arrival order on the receiving goroutine, even when
// the handlers run concurrently.
func TestServiceOnReceiveOrder(t *testing.T) {
	nc := testnats.Connect(t, testnats.Start(t, false).ClientURL())
	svc, err := wire.NewService(nc, wire.Config{Name: "order", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	var mu sync.Mutex
	var seen []int
	if err := svc.AddEndpoint(wire.Endpoint{Name: "seq", Subject: "order.seq", Concurrency: 16,
		OnReceive: func(r *wire.Request) {
			var n int
			_ = json.Unmarshal(r.Data(), &n)
			mu.Lock()
			seen = append(seen, n)
			mu.Unlock()
			r.Local = n
		},
		Handler: func(_ context.Context, r *wire.Request) { _ = r.Reply(r.Local, nil) }}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		m := &nats.Msg{Subject: "order.seq", Data: fmt.Appendf(nil, "%d", i)}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "every publish", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	for i, v := range seen {
		if v != i {
			t.Fatalf("OnReceive order %v", seen)
		}
	}
}

// waitUntil polls cond until it holds, failing after 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
