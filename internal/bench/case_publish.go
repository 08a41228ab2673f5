package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// publishConcurrency is how many goroutines call the bus publisher at once:
// the broker's own bound on requests in flight, each of which publishes
// synchronously.
const publishConcurrency = broker.DefaultMaxConcurrency

// runPublish: raw JetStream async publishes of the encoded CloudEvent vs
// the broker's Publisher building and publishing core events, 512 B and
// 4 KiB data, in-process and over loopback TCP.
func runPublish(ctx context.Context, r *runner) error {
	bus, err := StartBus(ctx)
	if err != nil {
		return err
	}
	defer bus.Close()
	r.setup["bus"] = bus.Topology
	tcpBroker, err := bus.StartExtraBroker(ctx)
	if err != nil {
		return err
	}
	dur := r.dur(300*time.Millisecond, time.Second)
	subject := wire.EventSubject(bus.Prefix, schemas.TypeJobDeployed)
	ratio := &Target{Kind: "ratio_min", Value: 0.95}

	for _, t := range []Transport{InProcess, TCP} {
		var errCount atomic.Int64
		rawJS, _, err := bus.JetStream(t, "raw-publisher", jetstream.WithPublishAsyncErrHandler(
			func(jetstream.JetStream, *nats.Msg, error) { errCount.Add(1) }))
		if err != nil {
			return err
		}
		br := bus.Broker
		if t == TCP {
			br = tcpBroker
		}
		var pub publisher
		if bp := realPublisher(br); bp != nil {
			pub = bp
			r.setup["publisher_"+string(t)] = "the broker's own Publisher (broker " + map[Transport]string{InProcess: "embedded, in-process connection", TCP: "#2 on loopback TCP"}[t] + ")"
		} else {
			js, _, err := bus.JetStream(t, "bus-publisher")
			if err != nil {
				return err
			}
			pub = mirrorPublisher{js: js, prefix: bus.Prefix}
			r.setup["publisher_"+string(t)] = "mirror of broker.Publisher (the broker's own publisher is not reachable)"
		}
		for _, size := range []int{512, 4096} {
			data := jobData(size, 0)
			tmpl, err := encodeCore(bus.Prefix, schemas.TypeJobDeployed, data)
			if err != nil {
				return err
			}
			label := sizeLabel(size)
			m := r.metric(fmt.Sprintf("publish %s %s", label, t), "events/s", true, ratio)
			m.Note = "raw: PublishMsgAsync of the pre-encoded event, 1 goroutine; bus: Publisher.PublishAsync building and encoding each core event, 1 goroutine, same 4096 window"
			for run := 0; run < r.cfg.Runs; run++ {
				if r.raw() {
					errCount.Store(0)
					v, err := rawPublishRate(ctx, rawJS, tmpl, dur, &errCount)
					if err != nil {
						return err
					}
					m.AddRaw(v)
					if err := purge(ctx, rawJS, subject); err != nil {
						return err
					}
				}
				if r.bus() {
					v, err := busAsyncRate(ctx, br.Publisher(), data, dur)
					if err != nil {
						return err
					}
					m.AddBus(v)
					if err := purge(ctx, rawJS, subject); err != nil {
						return err
					}
				}
			}
			r.logf("%s: raw %s bus %s events/s", m.Name, fmtNum(median(m.raw)), fmtNum(median(m.bus)))
		}
		if t == InProcess {
			// One synchronous publisher on each side: the per-event cost the
			// caller of a single API request waits for.
			data := jobData(512, 0)
			tmpl, err := encodeCore(bus.Prefix, schemas.TypeJobDeployed, data)
			if err != nil {
				return err
			}
			m := r.metric("publish 512B inproc sync, 1 publisher", "events/s", true, nil)
			m.Note = "raw: PublishMsg (waits for the ack) in a loop; bus: Publisher.Publish in a loop"
			for run := 0; run < r.cfg.Runs; run++ {
				if r.raw() {
					v, err := rawSyncRate(ctx, rawJS, tmpl, dur)
					if err != nil {
						return err
					}
					m.AddRaw(v)
				}
				if r.bus() {
					v, err := busPublishRate(ctx, pub, data, dur, 1)
					if err != nil {
						return err
					}
					m.AddBus(v)
				}
				if err := purge(ctx, rawJS, subject); err != nil {
					return err
				}
			}
			r.logf("%s: raw %s bus %s events/s", m.Name, fmtNum(median(m.raw)), fmtNum(median(m.bus)))
		}
	}
	return nil
}

func sizeLabel(size int) string {
	if size%1024 == 0 {
		return fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("%dB", size)
}

// rawPublishRate publishes copies of tmpl asynchronously for dur, waits for
// the last ack and returns acknowledged messages per second.
func rawPublishRate(ctx context.Context, js jetstream.JetStream, tmpl *nats.Msg, dur time.Duration, errCount *atomic.Int64) (float64, error) {
	start := time.Now()
	deadline := start.Add(dur)
	n := 0
	for time.Now().Before(deadline) {
		for range 64 {
			if _, err := js.PublishMsgAsync(rawCopy(tmpl)); err != nil {
				return 0, fmt.Errorf("raw async publish: %w", err)
			}
			n++
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("raw async publish: %d acks missing after 30s", js.PublishAsyncPending())
	}
	elapsed := time.Since(start)
	ok := n - int(errCount.Load())
	if ok < n/2 {
		return 0, fmt.Errorf("raw async publish: %d of %d failed", n-ok, n)
	}
	return float64(ok) / elapsed.Seconds(), nil
}

// rawSyncRate publishes copies of tmpl one at a time, waiting for each ack.
func rawSyncRate(ctx context.Context, js jetstream.JetStream, tmpl *nats.Msg, dur time.Duration) (float64, error) {
	start := time.Now()
	deadline := start.Add(dur)
	n := 0
	for time.Now().Before(deadline) {
		if _, err := js.PublishMsg(ctx, rawCopy(tmpl)); err != nil {
			return 0, fmt.Errorf("raw publish: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// busAsyncRate builds and publishes core events with the broker's
// Publisher.PublishAsync from one goroutine for dur, waits for every ack
// and returns stored events per second.
func busAsyncRate(ctx context.Context, pub *broker.Publisher, data any, dur time.Duration) (float64, error) {
	start := time.Now()
	deadline := start.Add(dur)
	futures := make([]jetstream.PubAckFuture, 0, 1<<16)
	for time.Now().Before(deadline) {
		for range 64 {
			f, _, err := pub.PublishAsync(ctx, schemas.TypeJobDeployed, data)
			if err != nil {
				return 0, fmt.Errorf("bus async publish: %w", err)
			}
			futures = append(futures, f)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := broker.AwaitAll(wctx, futures...); err != nil {
		return 0, fmt.Errorf("bus async publish: %w", err)
	}
	return float64(len(futures)) / time.Since(start).Seconds(), nil
}

// busPublishRate calls pub.Publish from conc goroutines for dur and returns
// published events per second.
func busPublishRate(ctx context.Context, pub publisher, data any, dur time.Duration, conc int) (float64, error) {
	start := time.Now()
	deadline := start.Add(dur)
	var n, fails atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := pub.Publish(ctx, schemas.TypeJobDeployed, data); err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := fails.Load(); f > n.Load()/2 {
		return 0, fmt.Errorf("bus publish: %d failed: %v", f, firstErr.Load())
	}
	return float64(n.Load()) / elapsed.Seconds(), nil
}
