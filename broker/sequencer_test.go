package broker

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestSequencerOrderAndConcurrency(t *testing.T) {
	s := newSequencer(8)
	ctx := context.Background()
	var mu sync.Mutex
	var order []int
	first := s.enqueue("a")
	if err := first.wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Queue 20 more on "a" in order; they must run in that order, one at a time.
	var wg sync.WaitGroup
	running := 0
	for i := 1; i <= 20; i++ {
		tn := s.enqueue("a")
		wg.Add(1)
		go func(i int, tn *turn) {
			defer wg.Done()
			if err := tn.wait(ctx); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			running++
			if running != 1 {
				t.Errorf("%d operations on one object at once", running)
			}
			order = append(order, i)
			running--
			mu.Unlock()
			tn.done()
		}(i, tn)
	}
	// Another object is not held up by "a".
	other := s.enqueue("b")
	if err := other.wait(ctx); err != nil {
		t.Fatal(err)
	}
	other.done()
	first.done()
	wg.Wait()
	for i, v := range order {
		if v != i+1 {
			t.Fatalf("order %v, want arrival order", order)
		}
	}
}

func TestSequencerGiveUpKeepsQueueMoving(t *testing.T) {
	s := newSequencer(8)
	first := s.enqueue("a")
	_ = first.wait(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	quitter := s.enqueue("a")
	last := s.enqueue("a")
	cancel()
	if err := quitter.wait(ctx); err == nil {
		t.Fatal("wait with a cancelled ctx must fail")
	}
	first.done()
	done := make(chan error, 1)
	go func() { done <- last.wait(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queue stalled behind a waiter that gave up")
	}
	last.done()
	if len(s.queues) != 0 {
		t.Fatalf("queues not cleaned up: %v", s.queues)
	}
}

func TestSequencerBound(t *testing.T) {
	s := newSequencer(1)
	a := s.enqueue("alert/a")
	_ = a.wait(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	b := s.enqueue("alert/b")
	if err := b.wait(ctx); err == nil {
		t.Fatal("a second object ran past a bound of 1")
	}
	// Another kind has slots of its own: alerts stuck behind a hung hook
	// never hold up jobs.
	j := s.enqueue("job/web")
	if err := j.wait(context.Background()); err != nil {
		t.Fatalf("a job waited for an alert's slot: %v", err)
	}
	j.done()
	a.done()
	c := s.enqueue("alert/c")
	if err := c.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.done()
}
