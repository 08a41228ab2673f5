package broker

import (
	"context"
	"sync"

	"github.com/plugbus/plugbus/schemas"
)

// limits bounds the calls in flight per key (a hook point, a plugin):
// bulkheads, so a hung plugin ties up its own slots and nothing else. A
// slot is taken on every hook step and plugin call: finding a key's
// semaphore takes no lock once it exists, and taking slots allocates
// nothing.
type limits struct {
	sems sync.Map // limitKey → chan struct{}
}

// limitKey names what a limit bounds: a hook point or a plugin.
type limitKey struct {
	kind, name string
}

func (k limitKey) String() string { return k.kind + " " + k.name }

func hookLimit(hook string) limitKey     { return limitKey{"hook", hook} }
func pluginLimit(plugin string) limitKey { return limitKey{"plugin", plugin} }

func newLimits() *limits { return &limits{} }

func (l *limits) sem(key limitKey, n int) chan struct{} {
	if c, ok := l.sems.Load(key); ok {
		return c.(chan struct{})
	}
	c, _ := l.sems.LoadOrStore(key, make(chan struct{}, n))
	return c.(chan struct{})
}

// slots are the slots a call holds; release gives them back.
type slots struct {
	held [2]chan struct{}
}

func (s slots) release() {
	for _, c := range s.held {
		if c != nil {
			<-c
		}
	}
}

// acquire takes a slot of key (at most n in flight), then one of key2
// (at most n2) unless key2 is the zero limitKey, waiting until ctx ends;
// it fails with a timeout naming the full one.
func (l *limits) acquire(ctx context.Context, key limitKey, n int, key2 limitKey, n2 int) (slots, error) {
	var s slots
	for i, k := range [2]limitKey{key, key2} {
		if k == (limitKey{}) {
			continue
		}
		limit := n
		if i == 1 {
			limit = n2
		}
		c := l.sem(k, limit)
		select {
		case c <- struct{}{}:
			s.held[i] = c
		case <-ctx.Done():
			s.release()
			return slots{}, schemas.Errorf(schemas.CodeTimeout, "", "%s has %d calls in flight, its limit, and none ended in time: it is slow or hung", k, limit)
		}
	}
	return s, nil
}

// callLimited runs a call to plugin within its limit of calls in flight.
func (b *Broker) callLimited(ctx context.Context, plugin string, call func(context.Context) error) error {
	s, err := b.limits.acquire(ctx, pluginLimit(plugin), b.cfg.PluginConcurrency, limitKey{}, 0)
	if err != nil {
		return err
	}
	defer s.release()
	return call(ctx)
}
