package broker

// Leadership: the duties that must run once per bus, however many brokers
// serve it, run on the broker that holds the lock on schemas.LockLeader
// (buslock.go). Every broker queues for it when it starts and holds it
// until it stops or loses its lease; the next broker in the queue takes
// over at once after a graceful stop, and within the lease TTL after a
// crash. The duties are:
//
//   - the plugin heartbeat: pinging every plugin, marking the silent ones
//     STALE and bringing them back when an instance answers again;
//   - marking hosts LOST when their hostd stops reporting;
//   - copying events that plugins gave up on into the dead-letter stream.
//
// The outbox sweeper (commit.go) and the host state events run on every
// broker: both are safe to run several times (compare-and-set writes,
// event ids derived from the record), and a broker that crashed is swept
// by the others without waiting for a leader.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/schemas"
)

// clusterMetrics are the metrics of leases, locks and leadership.
type clusterMetrics struct {
	leading     atomic.Bool
	leases      prometheus.Counter
	leaseLosses prometheus.Counter
	leaderships prometheus.Counter
	lockWait    prometheus.Histogram
}

func newClusterMetrics(reg *prometheus.Registry) *clusterMetrics {
	m := &clusterMetrics{
		leases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "plugbus_broker_leases_total", Help: "Leases on the bus this broker took (one at start, one more after each loss).",
		}),
		leaseLosses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "plugbus_broker_lease_losses_total", Help: "Leases on the bus this broker lost (expired or changed before a renewal).",
		}),
		leaderships: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "plugbus_broker_leaderships_total", Help: "Times this broker became the leader.",
		}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "plugbus_object_lock_wait_seconds", Help: "Time to take an object's lock across brokers (queueing included).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "plugbus_broker_leader", Help: "1 while this broker is the leader (runs heartbeats, LOST marking and dead-lettering), else 0.",
	}, func() float64 {
		if m.leading.Load() {
			return 1
		}
		return 0
	})
	reg.MustRegister(m.leases, m.leaseLosses, m.leaderships, m.lockWait, leader)
	return m
}

// Leading reports whether this broker is the bus's leader now.
func (b *Broker) Leading() bool { return b.cluster.leading.Load() }

// Roles /healthz reports.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

func (b *Broker) role() string {
	if b.Leading() {
		return RoleLeader
	}
	return RoleFollower
}

// campaign queues for leadership until ctx ends; while leading it runs the
// duties, which stop when leadership is lost.
func (b *Broker) campaign(ctx context.Context) {
	for ctx.Err() == nil {
		lctx, ol, err := b.locks.lock(ctx, schemas.LockLeader)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Debug().Err(err).Msg("queue for leadership; retrying")
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		since := time.Now()
		b.cluster.leading.Store(true)
		b.cluster.leaderships.Inc()
		b.log.Info().Str("lease", ol.leaseID).Msg("leading the bus: running heartbeats, host LOST marking and dead-lettering")
		b.leaderDuties(lctx)
		b.cluster.leading.Store(false)
		ol.release()
		if ctx.Err() == nil {
			b.log.Warn().Err(context.Cause(lctx)).Dur("led_for", time.Since(since)).Msg("no longer leading the bus; queueing again")
		} else {
			b.log.Info().Msg("stopped leading the bus")
		}
	}
}

// leaderDuties runs the leader's duties until ctx ends.
func (b *Broker) leaderDuties(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { b.reg.heartbeat(ctx) })
	wg.Go(func() { b.lostHostsLoop(ctx) })
	wg.Go(func() { b.runDLQ(ctx) })
	wg.Wait()
}

// runDLQ copies dead letters until ctx ends, starting again after a
// failure to start.
func (b *Broker) runDLQ(ctx context.Context) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		cc, err := b.startDLQ(ctx)
		if err == nil {
			<-ctx.Done()
			cc.Stop()
			return
		}
		if attempt == 1 || attempt%20 == 0 {
			b.log.Warn().Err(err).Msg("start the dead-letter path; retrying")
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 5*time.Second)):
		}
	}
}
