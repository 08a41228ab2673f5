package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// counter counts deliveries and remembers when the first and the n-th
// arrived.
type counter struct {
	n           int64
	got         atomic.Int64
	redelivered atomic.Int64
	first, last atomic.Int64
	done        chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), done: make(chan struct{})} }

func (c *counter) hit() {
	now := time.Now().UnixNano()
	switch k := c.got.Add(1); {
	case k == 1:
		c.first.Store(now)
		if c.n == 1 {
			c.last.Store(now)
			close(c.done)
		}
	case k == c.n:
		c.last.Store(now)
		close(c.done)
	}
}

// rate is deliveries per second between the first and the last.
func (c *counter) rate() float64 {
	d := time.Duration(c.last.Load() - c.first.Load())
	if d <= 0 {
		return 0
	}
	return float64(c.n-1) / d.Seconds()
}

func (c *counter) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("%d of %d deliveries within %s", c.got.Load(), c.n, timeout)
	}
}

// consumerManifest is the manifest of a plugin consuming eventType from the
// start of the stream.
func consumerManifest(name, eventType, start string) schemas.Manifest {
	return schemas.Manifest{Name: name, Version: "1.0.0", Description: "busbench consumer",
		Events: &schemas.EventSubscription{Types: []string{eventType}, Start: start}}
}

// runDeliver: a raw durable pull consumer with explicit acks vs an SDK event
// handler that does nothing, both draining the same pre-filled events from
// PLUGBUS_EVENTS over loopback TCP.
func runDeliver(ctx context.Context, r *runner) error {
	bus, err := StartBus(ctx)
	if err != nil {
		return err
	}
	defer bus.Close()
	n := r.pick(3000, 20000)
	js, _, err := bus.JetStream(InProcess, "prefill")
	if err != nil {
		return err
	}
	subject := wire.EventSubject(bus.Prefix, schemas.TypeJobDeployed)
	tmpl, err := encodeCore(bus.Prefix, schemas.TypeJobDeployed, jobData(512, 0))
	if err != nil {
		return err
	}
	m := r.metric("deliver 512B tcp, 1 consumer", "events/s", true, &Target{Kind: "ratio_min", Value: 0.95})
	m.Note = fmt.Sprintf("%d pre-filled events; raw: Consume() with the SDK's pull size (%d) + Ack, the broker's consumer config; bus: sdk HandleEvent returning nil", n, sdk.DefaultEventBuffer)
	mDef := r.metric("deliver 512B tcp, raw with default pull options", "events/s", true, nil)
	mDef.Note = "raw: Consume() with nats.go's default pull options (500)"
	mNoSample := r.metric("deliver 512B tcp, raw without ack sampling", "events/s", true, nil)
	mNoSample.Note = "raw: the same pull size, the consumer config without sample_freq (no ack metric per ack): the cost of per-plugin ack counts"
	mBusNoSample := r.metric("deliver 512B tcp, bus without ack sampling", "events/s", true, nil)
	mBusNoSample.Note = "bus: broker started with ack sampling off (Config.AckSampling off); raw: the same raw consumer without sampling"
	timeout := 120 * time.Second
	var redeliveries int64
	defer func() {
		if redeliveries > 0 {
			m.Note += fmt.Sprintf("; %d redeliveries seen (an ack wait ran out)", redeliveries)
		}
	}()
	rawRun := func(run int, name string, sample bool, pull int) (float64, error) {
		if err := purge(ctx, js, subject); err != nil {
			return 0, err
		}
		if err := prefill(ctx, js, tmpl, n); err != nil {
			return 0, err
		}
		c := newCounter(n)
		if err := rawConsume(ctx, bus, fmt.Sprintf("%s-%d", name, run), c, timeout, sample, pull); err != nil {
			return 0, fmt.Errorf("raw consumer: %w", err)
		}
		redeliveries += c.redelivered.Load()
		return c.rate(), nil
	}
	busRun := func(bus *Bus, run int, name string) (float64, error) {
		if err := purge(ctx, js, subject); err != nil {
			return 0, err
		}
		if err := prefill(ctx, js, tmpl, n); err != nil {
			return 0, err
		}
		c := newCounter(n)
		p, err := sdk.New(consumerManifest(fmt.Sprintf("%s-%d", name, run), schemas.TypeJobDeployed, schemas.StartAll),
			sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
		if err != nil {
			return 0, err
		}
		p.HandleEvent(schemas.TypeJobDeployed, func(ctx context.Context, _ event.Event) error {
			if d, ok := sdk.DeliveryFromContext(ctx); ok && d.NumDelivered > 1 {
				c.redelivered.Add(1)
			}
			c.hit()
			return nil
		})
		stop, err := bus.StartPlugin(p, TCP)
		if err != nil {
			return 0, err
		}
		err = c.wait(ctx, timeout)
		stop()
		if err != nil {
			return 0, fmt.Errorf("sdk consumer: %w", err)
		}
		redeliveries += c.redelivered.Load()
		return c.rate(), nil
	}
	for run := 0; run < r.cfg.Runs; run++ {
		if r.raw() {
			for _, x := range []struct {
				m      *Metric
				name   string
				sample bool
				pull   int
			}{{m, "raw-deliver", true, sdk.DefaultEventBuffer}, {mDef, "raw-deliver-default", true, 0}, {mNoSample, "raw-deliver-nosample", false, sdk.DefaultEventBuffer}} {
				v, err := rawRun(run, x.name, x.sample, x.pull)
				if err != nil {
					return err
				}
				x.m.AddRaw(v)
				if x.m == mNoSample {
					mBusNoSample.AddRaw(v)
				}
			}
		}
		if r.bus() {
			v, err := busRun(bus, run, "deliver")
			if err != nil {
				return err
			}
			m.AddBus(v)
			mDef.AddBus(v)
			mNoSample.AddBus(v)
		}
	}
	// The same SDK consumer on a broker with ack sampling off.
	if r.bus() {
		nbus, err := StartBusWith(ctx, func(c *broker.Config) { c.AckSampling = broker.AckSamplingOff })
		if err != nil {
			return err
		}
		defer nbus.Close()
		njs, _, err := nbus.JetStream(InProcess, "prefill")
		if err != nil {
			return err
		}
		js = njs
		for run := 0; run < r.cfg.Runs; run++ {
			v, err := busRun(nbus, run, "deliver-nosample")
			if err != nil {
				return err
			}
			mBusNoSample.AddBus(v)
		}
	}
	r.logf("%s: raw %s bus %s events/s", m.Name, fmtNum(median(m.raw)), fmtNum(median(m.bus)))
	return nil
}

// rawConsume creates the durable consumer the broker would create for a
// plugin called name (same config; without sample, no ack sampling) and
// drains it with a plain Consume pulling pull at a time (0: nats.go's
// default), acknowledging each message, until c has counted them all.
func rawConsume(ctx context.Context, bus *Bus, name string, c *counter, timeout time.Duration, sample bool, pull int) error {
	js, nc, err := bus.JetStream(TCP, "raw-consumer")
	if err != nil {
		return err
	}
	defer nc.Close()
	cc := broker.ConsumerConfig(bus.Prefix, consumerManifest(name, schemas.TypeJobDeployed, schemas.StartAll))
	if !sample {
		cc.SampleFrequency = ""
	}
	var opts []jetstream.PullConsumeOpt
	if pull > 0 {
		opts = append(opts, jetstream.PullMaxMessages(pull))
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, cc)
	if err != nil {
		return err
	}
	defer func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), schemas.StreamEvents, cc.Durable) }()
	cctx, err := cons.Consume(func(msg jetstream.Msg) {
		if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
			c.redelivered.Add(1)
		}
		c.hit()
		_ = msg.Ack()
	}, opts...)
	if err != nil {
		return err
	}
	defer cctx.Stop()
	return c.wait(ctx, timeout)
}
