package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// eventStreamConfig is PLUGBUS_EVENTS as the broker creates it, for the
// bare nats-server of the raw side.
func eventStreamConfig(prefix string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: schemas.StreamEvents, Subjects: []string{prefix + ".evt.>"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: 1, MaxAge: broker.DefaultEventMaxAge, Duplicates: 2 * time.Minute,
		MaxMsgSize: broker.DefaultMaxRequestBytes,
	}
}

// runScale: registries of 10, 1,000 and 10,000 plugins (time to register
// them with 32 registering clients, memory per plugin, action and hook
// latency and plugins.list at each size; case_scale_registry.go), 100
// plugins consuming one event type (fan-out throughput and delivery lag),
// and the broker's memory, with the broker as a child process (bin/broker)
// so its RSS is its own; the raw side is a bare nats-server child process.
func runScale(ctx context.Context, r *runner) error {
	bin, cleanup, err := r.brokerBinary(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	r.setup["scale"] = "broker binary " + bin + " as a child process (embedded nats-server); raw: busbench " + ChildNATSArg + " (bare nats-server, same options) as a child process; clients and plugins in busbench over loopback TCP"
	if err := scaleRegistry(ctx, r, bin); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := scaleFanOut(ctx, r, bin); err != nil {
		return fmt.Errorf("fan-out: %w", err)
	}
	return nil
}

// parallel runs f(0..n-1) on conc goroutines and returns the first error.
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

// fanState records, per consumer and event, when the event arrived.
type fanState struct {
	sent []atomic.Int64
	recv [][]atomic.Int64
	c    *counter
}

func newFanState(consumers, events int) *fanState {
	f := &fanState{sent: make([]atomic.Int64, events), recv: make([][]atomic.Int64, consumers), c: newCounter(consumers * events)}
	for i := range f.recv {
		f.recv[i] = make([]atomic.Int64, events)
	}
	return f
}

func (f *fanState) got(consumer int, data []byte) {
	now := time.Now().UnixNano()
	if i := seqOf(data); i >= 0 && i < len(f.sent) && f.recv[consumer][i].CompareAndSwap(0, now) {
		f.c.hit()
	}
}

// result returns deliveries per second from the first publish to the last
// delivery, and the publish-to-handler lags.
func (f *fanState) result() (float64, *Latencies) {
	l := NewLatencies(len(f.recv) * len(f.sent))
	first := f.sent[0].Load()
	var last int64
	for _, rs := range f.recv {
		for i := range rs {
			r := rs[i].Load()
			if r == 0 {
				continue
			}
			last = max(last, r)
			l.Add(time.Duration(r - f.sent[i].Load()))
		}
	}
	return float64(l.Len()) / time.Duration(last-first).Seconds(), l
}

// scaleFanOut runs N consumers of one event type and publishes bursts of
// events to all of them.
func scaleFanOut(ctx context.Context, r *runner, bin string) error {
	consumers := r.pick(20, 100)
	events := r.pick(200, 1000)
	msgs := make([]*nats.Msg, events)
	for i := range msgs {
		var err error
		if msgs[i], err = encodeCore(wire.DefaultPrefix, schemas.TypeAlertFired, alertData(i)); err != nil {
			return err
		}
	}
	name := fmt.Sprintf("fan-out %d consumers x %d events", consumers, events)
	mRate := r.metric(name+": deliveries/s", "deliveries/s", true, nil)
	mRate.Note = "first publish to last handler entry; raw: durable pull consumers (Consume + Ack); bus: SDK plugins; all over loopback TCP"
	mP50 := r.metric(name+": lag p50", "ms", false, nil)
	mP99 := r.metric(name+": lag p99", "ms", false, nil)
	mP50.Note = "publish to handler entry, whole burst published at once"
	mRSS := r.metric("broker RSS peak under fan-out load", "MiB", false, nil)
	mRSS.Note = "raw: bare nats-server process under the same load"

	// burst publishes every event once (fresh ids) as fast as async
	// publishing allows and waits for every delivery.
	burst := func(c *child, js jetstream.JetStream, st *fanState) (float64, *Latencies, float64, error) {
		stopRSS := c.sampleRSS()
		for i, m := range msgs {
			st.sent[i].Store(time.Now().UnixNano())
			if _, err := js.PublishMsgAsync(rawCopy(m)); err != nil {
				stopRSS()
				return 0, nil, 0, err
			}
		}
		err := st.c.wait(ctx, 180*time.Second)
		peak := stopRSS()
		if err != nil {
			return 0, nil, 0, err
		}
		rate, l := st.result()
		return rate, l, peak, nil
	}
	var cur atomic.Pointer[fanState]
	runSide := func(raw bool) error {
		var c *child
		var err error
		if raw {
			c, err = startChildNATS(ctx, r.cfg.Self)
		} else {
			c, err = startChildBroker(ctx, bin)
		}
		if err != nil {
			return err
		}
		defer c.Stop()
		var conns []*nats.Conn
		var stops []func()
		defer func() {
			var wg sync.WaitGroup
			for _, s := range stops {
				wg.Go(s)
			}
			wg.Wait()
			for _, nc := range conns {
				nc.Close()
			}
		}()
		pubNC, err := dial(c.URL, nats.Name("fan-out-publisher"))
		if err != nil {
			return err
		}
		conns = append(conns, pubNC)
		js, err := jetstream.New(pubNC)
		if err != nil {
			return err
		}
		if raw {
			if _, err := js.CreateOrUpdateStream(ctx, eventStreamConfig(wire.DefaultPrefix)); err != nil {
				return err
			}
		}
		var mu sync.Mutex
		if err := parallel(ctx, consumers, 10, func(i int) error {
			m := consumerManifest(fmt.Sprintf("fan-%03d", i), schemas.TypeAlertFired, schemas.StartNew)
			if raw {
				nc, err := dial(c.URL, nats.Name(m.Name))
				if err != nil {
					return err
				}
				mu.Lock()
				conns = append(conns, nc)
				mu.Unlock()
				cjs, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				cons, err := cjs.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, broker.ConsumerConfig(wire.DefaultPrefix, m))
				if err != nil {
					return err
				}
				cc, err := cons.Consume(func(msg jetstream.Msg) {
					if st := cur.Load(); st != nil {
						st.got(i, msg.Data())
					}
					_ = msg.Ack()
				})
				if err != nil {
					return err
				}
				mu.Lock()
				stops = append(stops, cc.Stop)
				mu.Unlock()
				return nil
			}
			p, err := sdk.New(m, sdk.WithLogger(prodLogger()))
			if err != nil {
				return err
			}
			p.HandleEvent(schemas.TypeAlertFired, func(_ context.Context, e event.Event) error {
				if st := cur.Load(); st != nil {
					st.got(i, e.Data())
				}
				return nil
			})
			stop, err := startPlugin(nil, c.URL, p, TCP, nil)
			if err != nil {
				return err
			}
			mu.Lock()
			stops = append(stops, stop)
			mu.Unlock()
			return nil
		}); err != nil {
			return err
		}
		for run := 0; run < r.cfg.Runs; run++ {
			st := newFanState(consumers, events)
			cur.Store(st)
			rate, l, peak, err := burst(c, js, st)
			cur.Store(nil)
			if err != nil {
				return err
			}
			add := (*Metric).AddBus
			if raw {
				add = (*Metric).AddRaw
			}
			add(mRate, rate)
			add(mP50, us(l.Percentile(50))/1000)
			add(mP99, us(l.Percentile(99))/1000)
			add(mRSS, peak)
		}
		return nil
	}
	if r.raw() {
		if err := runSide(true); err != nil {
			return fmt.Errorf("raw: %w", err)
		}
	}
	if r.bus() {
		if err := runSide(false); err != nil {
			return fmt.Errorf("bus: %w", err)
		}
	}
	if len(mRate.bus) == 0 && len(mRate.raw) == 0 {
		return errors.New("no fan-out run completed")
	}
	r.logf("%s: raw %s bus %s", mRate.Name, fmtNum(median(mRate.raw)), fmtNum(median(mRate.bus)))
	r.logf("%s: raw %s bus %s ms; p99 raw %s bus %s ms", mP50.Name, fmtNum(median(mP50.raw)), fmtNum(median(mP50.bus)), fmtNum(median(mP99.raw)), fmtNum(median(mP99.bus)))
	r.logf("%s: raw %s bus %s MiB", mRSS.Name, fmtNum(median(mRSS.raw)), fmtNum(median(mRSS.bus)))
	return nil
}
