package sdk

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [NewHookAnswers] callers are advised to start from.
const (
	// DefaultHookAnswersTTL is how long an answer is worth remembering: a
	// broker that crashed mid-chain sends the step again when its
	// operation resumes, normally within seconds of its restart.
	DefaultHookAnswersTTL = time.Hour
	// DefaultHookAnswersSize bounds the answers remembered at once.
	DefaultHookAnswersSize = 10000
)

// HookAnswers remembers the answers this plugin instance gave to hook
// steps, by each step's idempotency key ([HookRequest.IdempotencyKey]),
// and answers a repeated step with the first answer without calling the
// handler again. The broker sends a step again, with the same key, when a
// crash cut its chain short and the chain resumes (docs/hooks.md,
// "Resumable chains"); with HookAnswers in front of the handlers, the
// step's work is done once.
//
// A repeat is the same key with the same request (hook point, chain,
// step, object, payload and env): the same key with another request runs
// the handler again, and its answer replaces the first. A repeat that
// arrives while the first call still runs (the broker died while the
// handler worked) waits for it and gets its answer. Only answers are
// remembered, not errors: a failed step runs again.
//
// Answers are kept in memory, for ttl after they were given, at most size
// of them (the least recently used go first). So a repeat is recognised
// when it reaches the same instance within ttl; with several instances
// the repeat may reach another one, and a plugin restarted meanwhile has
// forgotten: for a side effect that must happen once whatever instance
// runs it, use [Plugin.Once] with the step's key, which remembers in the
// bus.
//
// Use it as middleware: p.Use(answers.Middleware()). It is safe for
// concurrent use.
type HookAnswers struct {
	ttl  time.Duration
	size int
	now  func() time.Time

	mu       sync.Mutex
	entries  map[string]*list.Element // of *hookAnswer
	lru      *list.List               // most recently used first
	inflight map[string]*hookFlight
	repeats  atomic.Int64
	waiting  atomic.Int64 // repeats waiting for a first call now
}

type hookAnswer struct {
	key string
	sum [32]byte
	out any
	at  time.Time
}

type hookFlight struct {
	sum  [32]byte
	done chan struct{}
	out  any
	err  error
}

// NewHookAnswers returns a HookAnswers remembering each answer for ttl, at
// most size answers at once. Both must be positive (an error wrapping
// [ErrInvalidOption] says which is not).
func NewHookAnswers(ttl time.Duration, size int) (*HookAnswers, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: hook answers: ttl %s must be positive (DefaultHookAnswersTTL is %s)", ErrInvalidOption, ttl, DefaultHookAnswersTTL)
	}
	if size <= 0 {
		return nil, fmt.Errorf("%w: hook answers: size %d must be positive (DefaultHookAnswersSize is %d)", ErrInvalidOption, size, DefaultHookAnswersSize)
	}
	return &HookAnswers{ttl: ttl, size: size, now: time.Now, entries: map[string]*list.Element{}, lru: list.New(), inflight: map[string]*hookFlight{}}, nil
}

// Repeats is how many hook calls were answered with a remembered (or a
// concurrent first call's) answer, without calling the handler.
func (a *HookAnswers) Repeats() int64 { return a.repeats.Load() }

// Len is how many answers are remembered now.
func (a *HookAnswers) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

// Middleware returns the middleware that answers repeated hook steps.
// Calls that are not hook calls, and hook calls without a key, go
// through untouched.
func (a *HookAnswers) Middleware() Middleware {
	return func(next Next) Next {
		return func(ctx context.Context, c *Call) (any, error) {
			req, ok := c.Request.(*HookRequest)
			if c.Kind != KindHook || !ok || req == nil || req.IdempotencyKey == "" {
				return next(ctx, c)
			}
			return a.serve(ctx, c, req, next)
		}
	}
}

func (a *HookAnswers) serve(ctx context.Context, c *Call, req *HookRequest, next Next) (any, error) {
	key := req.IdempotencyKey
	sum, err := requestSum(req)
	if err != nil {
		return next(ctx, c)
	}
	for {
		a.mu.Lock()
		if out, ok := a.lookupLocked(key, sum); ok {
			a.mu.Unlock()
			a.repeats.Add(1)
			return out, nil
		}
		f := a.inflight[key]
		if f == nil || f.sum != sum {
			// Ours to run (a concurrent call with another request runs
			// too; the last answer is remembered).
			f = &hookFlight{sum: sum, done: make(chan struct{})}
			a.inflight[key] = f
			a.mu.Unlock()
			return a.run(ctx, c, key, f, next)
		}
		a.mu.Unlock()
		a.waiting.Add(1)
		select {
		case <-f.done:
			a.waiting.Add(-1)
			if f.err == nil {
				a.repeats.Add(1)
				return f.out, nil
			}
			// The first call failed: errors are not answers; look again
			// (and run the step, unless another repeat does already).
		case <-ctx.Done():
			a.waiting.Add(-1)
			return nil, ctx.Err()
		}
	}
}

func (a *HookAnswers) run(ctx context.Context, c *Call, key string, f *hookFlight, next Next) (out any, err error) {
	returned := false
	defer func() {
		if !returned {
			// The handler panicked (invoke turns that into an error, out
			// here): nothing to remember; a waiting repeat runs it again.
			err = errHookPanicked
		}
		a.mu.Lock()
		if a.inflight[key] == f {
			delete(a.inflight, key)
		}
		if err == nil {
			a.storeLocked(key, f.sum, out)
		}
		f.out, f.err = out, err
		close(f.done)
		a.mu.Unlock()
	}()
	out, err = next(ctx, c)
	returned = true
	return out, err
}

var errHookPanicked = errors.New("hook handler panicked")

// lookupLocked returns the remembered answer of key for a request with
// sum, dropping it when it has expired.
func (a *HookAnswers) lookupLocked(key string, sum [32]byte) (any, bool) {
	el := a.entries[key]
	if el == nil {
		return nil, false
	}
	e := el.Value.(*hookAnswer)
	if a.now().Sub(e.at) > a.ttl {
		a.lru.Remove(el)
		delete(a.entries, key)
		return nil, false
	}
	if e.sum != sum {
		return nil, false
	}
	a.lru.MoveToFront(el)
	return e.out, true
}

func (a *HookAnswers) storeLocked(key string, sum [32]byte, out any) {
	now := a.now()
	if el := a.entries[key]; el != nil {
		e := el.Value.(*hookAnswer)
		e.sum, e.out, e.at = sum, out, now
		a.lru.MoveToFront(el)
		return
	}
	a.entries[key] = a.lru.PushFront(&hookAnswer{key: key, sum: sum, out: out, at: now})
	// The least recently used go, and any expired ones at the back.
	for back := a.lru.Back(); back != nil && (a.lru.Len() > a.size || now.Sub(back.Value.(*hookAnswer).at) > a.ttl); back = a.lru.Back() {
		a.lru.Remove(back)
		delete(a.entries, back.Value.(*hookAnswer).key)
	}
}

// requestSum identifies what a hook call asks: two calls with the same
// key and sum are the same step of the same run, sent twice.
func requestSum(req *HookRequest) ([32]byte, error) {
	body, err := json.Marshal(req.HookRequest)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(body), nil
}
