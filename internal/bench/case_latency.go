package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// latencyWarmup events at the start of each latency run are not counted.
const latencyWarmup = 100

// stamps records, per event sequence number, when it was sent and when a
// handler got it.
type stamps struct {
	sent, recv []atomic.Int64
	c          *counter
}

func newStamps(n int) *stamps {
	return &stamps{sent: make([]atomic.Int64, n), recv: make([]atomic.Int64, n), c: newCounter(n)}
}

// got records the arrival of the event whose data is data.
func (s *stamps) got(data []byte) {
	now := time.Now().UnixNano()
	if i := seqOf(data); i >= 0 && i < len(s.recv) {
		if s.recv[i].CompareAndSwap(0, now) {
			s.c.hit()
		}
	}
}

// latencies returns the send-to-handler latencies after the warm-up.
func (s *stamps) latencies(skip int) *Latencies {
	l := NewLatencies(len(s.sent))
	for i := skip; i < len(s.sent); i++ {
		if r, t := s.recv[i].Load(), s.sent[i].Load(); r > 0 && t > 0 {
			l.Add(time.Duration(r - t))
		}
	}
	return l
}

// pace calls send(i) for i in [0, n) at rate per second, open loop: events
// that fall due while a send is slow are sent right after it, not dropped.
// It returns how far behind its schedule the sender fell at worst.
func pace(ctx context.Context, n, rate int, s *stamps, send func(i int) error) (time.Duration, error) {
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var behind time.Duration
	for i := 0; i < n; {
		if ctx.Err() != nil {
			return behind, ctx.Err()
		}
		due := min(int(time.Since(start)/interval)+1, n)
		for ; i < due; i++ {
			now := time.Now()
			behind = max(behind, now.Sub(start.Add(time.Duration(i)*interval)))
			s.sent[i].Store(now.UnixNano())
			if err := send(i); err != nil {
				return behind, err
			}
		}
		time.Sleep(interval / 2)
	}
	return behind, nil
}

// runLatency: a core event published (by the broker's publisher on its
// in-process connection, or a raw async publish) until the consumer's
// handler is entered (an SDK plugin, or a raw pull consumer, both over
// loopback TCP), at a fixed offered rate.
func runLatency(ctx context.Context, r *runner) error {
	bus, err := StartBus(ctx)
	if err != nil {
		return err
	}
	defer bus.Close()
	rate := r.cfg.Rate
	dur := r.dur(600*time.Millisecond, 2*time.Second)
	n := int(int64(rate) * int64(dur) / int64(time.Second))
	rawJS, _, err := bus.JetStream(InProcess, "raw-publisher")
	if err != nil {
		return err
	}
	var pub publisher
	if bp := realPublisher(bus.Broker); bp != nil {
		pub = bp
	} else {
		pub = mirrorPublisher{js: rawJS, prefix: bus.Prefix}
	}
	data := make([]schemas.JobDeployedData, n)
	msgs := make([]*nats.Msg, n)
	for i := range n {
		data[i] = jobData(512, i)
		if msgs[i], err = encodeCore(bus.Prefix, schemas.TypeJobDeployed, data[i]); err != nil {
			return err
		}
	}
	name := fmt.Sprintf("e2e latency 512B @%d/s", rate)
	note := fmt.Sprintf("publish (in-process) -> handler entered (loopback TCP), %d events per run, first %d not counted", n, latencyWarmup)
	p50 := r.metric(name+" p50", "µs", false, nil)
	p99 := r.metric(name+" p99", "µs", false, &Target{Kind: "bus_max", Value: 1000})
	p999 := r.metric(name+" p99.9", "µs", false, nil)
	p50.Note, p99.Note, p999.Note = note, note, note
	lag := r.metric("e2e latency: publisher behind schedule, max", "µs", false, nil)
	lag.Note = "how late the publishing loop sent its most delayed event: the offered rate was kept when this is small"
	add := func(raw bool, l *Latencies) {
		for _, x := range []struct {
			m *Metric
			p float64
		}{{p50, 50}, {p99, 99}, {p999, 99.9}} {
			if raw {
				x.m.AddRaw(us(l.Percentile(x.p)))
			} else {
				x.m.AddBus(us(l.Percentile(x.p)))
			}
		}
	}
	timeout := dur + 30*time.Second
	for run := 0; run < r.cfg.Runs; run++ {
		if r.raw() {
			s := newStamps(n)
			js, nc, err := bus.JetStream(TCP, "raw-consumer")
			if err != nil {
				return err
			}
			cc := broker.ConsumerConfig(bus.Prefix, consumerManifest(fmt.Sprintf("raw-latency-%d", run), schemas.TypeJobDeployed, schemas.StartNew))
			cons, err := js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, cc)
			if err != nil {
				return err
			}
			cctx, err := cons.Consume(func(msg jetstream.Msg) {
				s.got(msg.Data())
				_ = msg.Ack()
			})
			if err != nil {
				return err
			}
			behind, err := pace(ctx, n, rate, s, func(i int) error {
				_, err := rawJS.PublishMsgAsync(rawCopy(msgs[i]))
				return err
			})
			lag.AddRaw(us(behind))
			if err == nil {
				err = s.c.wait(ctx, timeout)
			}
			cctx.Stop()
			_ = js.DeleteConsumer(ctx, schemas.StreamEvents, cc.Durable)
			nc.Close()
			if err != nil {
				return fmt.Errorf("raw: %w", err)
			}
			add(true, s.latencies(latencyWarmup))
		}
		if r.bus() {
			s := newStamps(n)
			p, err := sdk.New(consumerManifest(fmt.Sprintf("latency-%d", run), schemas.TypeJobDeployed, schemas.StartNew),
				sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
			if err != nil {
				return err
			}
			p.HandleEvent(schemas.TypeJobDeployed, func(_ context.Context, e event.Event) error {
				s.got(e.Data())
				return nil
			})
			stop, err := bus.StartPlugin(p, TCP)
			if err != nil {
				return err
			}
			behind, err := pace(ctx, n, rate, s, func(i int) error {
				_, err := pub.Publish(ctx, schemas.TypeJobDeployed, data[i])
				return err
			})
			lag.AddBus(us(behind))
			if err == nil {
				err = s.c.wait(ctx, timeout)
			}
			stop()
			if err != nil {
				return fmt.Errorf("bus: %w", err)
			}
			add(false, s.latencies(latencyWarmup))
		}
	}
	for _, m := range []*Metric{p50, p99, p999} {
		r.logf("%s: raw %s bus %s µs", m.Name, fmtNum(median(m.raw)), fmtNum(median(m.bus)))
	}
	return nil
}
