package broker

import (
	"context"
	"strings"
	"sync"
)

// sequencer runs operations on the same object one at a time, in arrival
// order, and bounds how many objects of one kind (the object's prefix:
// "job", "machine", "alert") are worked on at once. Operations on
// different objects run concurrently, and a kind whose operations are
// stuck (behind a hung hook) never takes another kind's slots.
//
// A place in an object's queue is taken with enqueue, synchronously, on
// the goroutine that receives the requests; the operation then waits for
// its turn on its own goroutine. That keeps arrival order even though
// requests are handled concurrently.
type sequencer struct {
	mu     sync.Mutex
	queues map[string]*objectQueue
	max    int
	sems   map[string]chan struct{} // by kind
}

type objectQueue struct {
	busy    bool
	waiters []*turn
}

// turn is one operation's place in an object's queue.
type turn struct {
	s      *sequencer
	object string
	ready  chan struct{}
	once   sync.Once
	held   bool
}

func newSequencer(maxConcurrent int) *sequencer {
	return &sequencer{queues: map[string]*objectQueue{}, max: maxConcurrent, sems: map[string]chan struct{}{}}
}

// sem returns the slots of an object's kind.
func (s *sequencer) sem(object string) chan struct{} {
	kind, _, _ := strings.Cut(object, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.sems[kind]
	if c == nil {
		c = make(chan struct{}, s.max)
		s.sems[kind] = c
	}
	return c
}

// enqueue takes the next place in object's queue.
func (s *sequencer) enqueue(object string) *turn {
	t := &turn{s: s, object: object, ready: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[object]
	if q == nil {
		q = &objectQueue{}
		s.queues[object] = q
	}
	if !q.busy {
		q.busy = true
		close(t.ready)
	} else {
		q.waiters = append(q.waiters, t)
	}
	return t
}

// wait blocks until it is this turn and a slot is free. If ctx ends first
// the place is given up (call done anyway; it is then a no-op).
func (t *turn) wait(ctx context.Context) error {
	select {
	case <-t.ready:
	case <-ctx.Done():
		t.done()
		return ctx.Err()
	}
	select {
	case t.s.sem(t.object) <- struct{}{}:
		t.held = true
		return nil
	case <-ctx.Done():
		t.done()
		return ctx.Err()
	}
}

// done ends the turn (or gives up the place) and hands the object to the
// next waiter.
func (t *turn) done() {
	t.once.Do(func() {
		if t.held {
			<-t.s.sem(t.object)
		}
		s := t.s
		s.mu.Lock()
		defer s.mu.Unlock()
		q := s.queues[t.object]
		if q == nil {
			return
		}
		select {
		case <-t.ready:
			// We had (or were given) the object: pass it on.
		default:
			// Still waiting: leave the queue.
			for i, w := range q.waiters {
				if w == t {
					q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
					return
				}
			}
			return
		}
		if len(q.waiters) > 0 {
			next := q.waiters[0]
			q.waiters = q.waiters[1:]
			close(next.ready)
			return
		}
		q.busy = false
		delete(s.queues, t.object)
	})
}
