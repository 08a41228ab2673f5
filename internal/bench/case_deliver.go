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
	m := r.metric("deliver 512B tcp, 1 consumer", "events/s", true, &Target{Kind: "ratio_min", Value: 0.85})
	m.Note = fmt.Sprintf("%d pre-filled events; raw: Consume() with default pull options + Ack; bus: sdk HandleEvent returning nil", n)
	timeout := 120 * time.Second
	var redeliveries int64
	defer func() {
		if redeliveries > 0 {
			m.Note += fmt.Sprintf("; %d redeliveries seen (an ack wait ran out)", redeliveries)
		}
	}()
	for run := 0; run < r.cfg.Runs; run++ {
		if r.raw() {
			if err := purge(ctx, js, subject); err != nil {
				return err
			}
			if err := prefill(ctx, js, tmpl, n); err != nil {
				return err
			}
			c := newCounter(n)
			if err := rawConsume(ctx, bus, fmt.Sprintf("raw-deliver-%d", run), c, timeout); err != nil {
				return fmt.Errorf("raw consumer: %w", err)
			}
			m.AddRaw(c.rate())
			redeliveries += c.redelivered.Load()
		}
		if r.bus() {
			if err := purge(ctx, js, subject); err != nil {
				return err
			}
			if err := prefill(ctx, js, tmpl, n); err != nil {
				return err
			}
			c := newCounter(n)
			p, err := sdk.New(consumerManifest(fmt.Sprintf("deliver-%d", run), schemas.TypeJobDeployed, schemas.StartAll),
				sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
			if err != nil {
				return err
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
				return err
			}
			err = c.wait(ctx, timeout)
			stop()
			if err != nil {
				return fmt.Errorf("sdk consumer: %w", err)
			}
			m.AddBus(c.rate())
			redeliveries += c.redelivered.Load()
		}
	}
	r.logf("%s: raw %s bus %s events/s", m.Name, fmtNum(median(m.raw)), fmtNum(median(m.bus)))
	return nil
}

// rawConsume creates the durable consumer the broker would create for a
// plugin called name (same config) and drains it with a plain Consume,
// acknowledging each message, until c has counted them all.
func rawConsume(ctx context.Context, bus *Bus, name string, c *counter, timeout time.Duration) error {
	js, nc, err := bus.JetStream(TCP, "raw-consumer")
	if err != nil {
		return err
	}
	defer nc.Close()
	cc := broker.ConsumerConfig(bus.Prefix, consumerManifest(name, schemas.TypeJobDeployed, schemas.StartAll))
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
	})
	if err != nil {
		return err
	}
	defer cctx.Stop()
	return c.wait(ctx, timeout)
}
