package broker

import (
	"context"
	"sync"

	"github.com/plugbus/plugbus/schemas"
)

// limits bounds the calls in flight per key (a hook point, a plugin):
// bulkheads, so a hung plugin ties up its own slots and nothing else.
type limits struct {
	mu   sync.Mutex
	sems map[string]chan struct{}
}

func newLimits() *limits { return &limits{sems: map[string]chan struct{}{}} }

func (l *limits) sem(key string, n int) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.sems[key]
	if c == nil {
		c = make(chan struct{}, n)
		l.sems[key] = c
	}
	return c
}

// acquire takes a slot of each (key, n) pair in order, waiting until ctx
// ends; it fails with a timeout naming the full one.
func (l *limits) acquire(ctx context.Context, pairs ...any) (func(), error) {
	var held []chan struct{}
	release := func() {
		for _, c := range held {
			<-c
		}
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		key, n := pairs[i].(string), pairs[i+1].(int)
		c := l.sem(key, n)
		select {
		case c <- struct{}{}:
			held = append(held, c)
		case <-ctx.Done():
			release()
			return nil, schemas.Errorf(schemas.CodeTimeout, "", "%s has %d calls in flight, its limit, and none ended in time: it is slow or hung", key, n)
		}
	}
	return release, nil
}

// callLimited runs a call to plugin within its limit of calls in flight.
func (b *Broker) callLimited(ctx context.Context, plugin string, call func(context.Context) error) error {
	release, err := b.limits.acquire(ctx, "plugin "+plugin, b.cfg.PluginConcurrency)
	if err != nil {
		return err
	}
	defer release()
	return call(ctx)
}
