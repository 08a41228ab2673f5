package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// stepCall is a hook call of step step of chain as middleware sees it.
func stepCall(chain string, step int, payload string) *sdk.Call {
	return &sdk.Call{Kind: sdk.KindHook, Name: schemas.HookAlertPreNotify, Request: &sdk.HookRequest{
		HookRequest: schemas.HookRequest{Hook: schemas.HookAlertPreNotify, ChainID: chain, Object: "alert/a", Step: step,
			Payload: json.RawMessage(payload)},
		IdempotencyKey: schemas.StepKey(chain, step),
	}}
}

// counting is a hook handler (as the end of a middleware chain) that
// counts its calls and answers a patch naming the call.
type counting struct {
	n    atomic.Int32
	fail atomic.Bool
}

func (c *counting) next(_ context.Context, _ *sdk.Call) (any, error) {
	n := c.n.Add(1)
	if c.fail.Load() {
		return nil, errors.New("inventory unreachable")
	}
	return sdk.ContinueWith(map[string]any{"labels": map[string]any{"call": n}})
}

func patchOf(t *testing.T, out any) string {
	t.Helper()
	r, ok := out.(*schemas.HookResponse)
	if !ok || r == nil {
		t.Fatalf("answer %#v is not a hook response", out)
	}
	return string(r.Patch)
}

func TestHookAnswersRepeats(t *testing.T) {
	a, err := sdk.NewHookAnswers(time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	var h counting
	next := a.Middleware()(h.next)
	ctx := context.Background()

	first, err := next(ctx, stepCall("op-0-0", 2, `{"id":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	again, err := next(ctx, stepCall("op-0-0", 2, `{"id":"a"}`))
	if err != nil || patchOf(t, again) != patchOf(t, first) || h.n.Load() != 1 || a.Repeats() != 1 {
		t.Fatalf("repeat: %s (%v), %d handler calls, %d repeats; want the first answer %s, 1 call, 1 repeat",
			patchOf(t, again), err, h.n.Load(), a.Repeats(), patchOf(t, first))
	}
	// Another step, another chain, or the same key with another request:
	// not repeats.
	for _, c := range []*sdk.Call{stepCall("op-0-0", 3, `{"id":"a"}`), stepCall("op-1-0", 2, `{"id":"a"}`), stepCall("op-0-0", 2, `{"id":"b"}`)} {
		if _, err := next(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if h.n.Load() != 4 || a.Repeats() != 1 {
		t.Fatalf("%d handler calls, %d repeats; want 4 and 1", h.n.Load(), a.Repeats())
	}
	// The changed request's answer replaced the first.
	latest, _ := next(ctx, stepCall("op-0-0", 2, `{"id":"b"}`))
	if h.n.Load() != 4 || patchOf(t, latest) != `{"labels":{"call":4}}` {
		t.Fatalf("after a changed request: %s, %d calls", patchOf(t, latest), h.n.Load())
	}
	// Calls without a key, and calls that are not hook calls, go through.
	noKey := stepCall("op-0-0", 2, `{"id":"b"}`)
	noKey.Request.(*sdk.HookRequest).IdempotencyKey = ""
	_, _ = next(ctx, noKey)
	_, _ = next(ctx, &sdk.Call{Kind: sdk.KindAction, Name: "reboot"})
	if h.n.Load() != 6 {
		t.Fatalf("%d handler calls; want 6", h.n.Load())
	}
}

func TestHookAnswersForgetErrorsExpiredAndOldest(t *testing.T) {
	a, err := sdk.NewHookAnswers(time.Minute, 2)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a.SetClock(func() time.Time { return now })
	var h counting
	next := a.Middleware()(h.next)
	ctx := context.Background()

	h.fail.Store(true)
	if _, err := next(ctx, stepCall("c-0-0", 0, `{}`)); err == nil {
		t.Fatal("want the handler's error")
	}
	h.fail.Store(false)
	if _, err := next(ctx, stepCall("c-0-0", 0, `{}`)); err != nil || h.n.Load() != 2 {
		t.Fatalf("an error is no answer: the step runs again (%d calls, %v)", h.n.Load(), err)
	}
	now = now.Add(2 * time.Minute)
	_, _ = next(ctx, stepCall("c-0-0", 0, `{}`))
	if h.n.Load() != 3 {
		t.Fatalf("an answer older than the ttl is forgotten: %d calls, want 3", h.n.Load())
	}
	_, _ = next(ctx, stepCall("c-0-0", 1, `{}`))
	_, _ = next(ctx, stepCall("c-0-0", 2, `{}`))
	if a.Len() != 2 {
		t.Fatalf("%d answers remembered, want at most 2", a.Len())
	}
	_, _ = next(ctx, stepCall("c-0-0", 0, `{}`)) // the least recently used went
	_, _ = next(ctx, stepCall("c-0-0", 2, `{}`)) // still there
	if h.n.Load() != 6 || a.Repeats() != 1 {
		t.Fatalf("%d calls, %d repeats; want 6 and 1", h.n.Load(), a.Repeats())
	}

	for _, bad := range []struct {
		ttl  time.Duration
		size int
	}{{0, 1}, {time.Second, 0}} {
		if _, err := sdk.NewHookAnswers(bad.ttl, bad.size); !errors.Is(err, sdk.ErrInvalidOption) {
			t.Errorf("NewHookAnswers(%s, %d): %v, want ErrInvalidOption", bad.ttl, bad.size, err)
		}
	}
}

// A repeat that arrives while the first call still runs (the broker died
// and resumed the chain meanwhile) waits for it and gets its answer.
func TestHookAnswersRepeatWhileTheFirstRuns(t *testing.T) {
	a, _ := sdk.NewHookAnswers(time.Hour, 10)
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	next := a.Middleware()(func(context.Context, *sdk.Call) (any, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return sdk.Reject("held"), nil
	})
	var wg sync.WaitGroup
	outs := make([]any, 2)
	wg.Go(func() { outs[0], _ = next(context.Background(), stepCall("c-0-0", 1, `{}`)) })
	<-started
	wg.Go(func() { outs[1], _ = next(context.Background(), stepCall("c-0-0", 1, `{}`)) })
	// The repeat waits for the first call (the handler is not called a
	// second time, however long the first takes).
	deadline := time.Now().Add(10 * time.Second)
	for a.Waiting() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the repeat is not waiting for the first call (%d handler calls)", calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if calls.Load() != 1 || a.Repeats() != 1 || outs[0] != outs[1] {
		t.Fatalf("%d handler calls, %d repeats, answers %v; want one call answering both", calls.Load(), a.Repeats(), outs)
	}
}

// Through a running plugin: the hook request's Idempotency-Key header
// reaches the handler as HookRequest.IdempotencyKey, and HookAnswers
// answers the repeat without the handler.
func TestHookAnswersOnTheWire(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	m := schemas.Manifest{Name: "remember", Version: "1.0.0", Hooks: []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify}}}
	p := newPlugin(t, m)
	answers, _ := sdk.NewHookAnswers(sdk.DefaultHookAnswersTTL, sdk.DefaultHookAnswersSize)
	p.Use(answers.Middleware())
	var mu sync.Mutex
	var keys []string
	p.HandleHook(schemas.HookAlertPreNotify, func(_ context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
		mu.Lock()
		keys = append(keys, req.IdempotencyKey)
		mu.Unlock()
		return sdk.ContinueWith(map[string]any{"labels": map[string]string{"seen": req.IdempotencyKey}})
	})
	runPlugin(t, s.ClientURL(), p)
	nc := connect(t, s.ClientURL())
	call := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var resp schemas.HookResponse
		req := schemas.HookRequest{Hook: schemas.HookAlertPreNotify, ChainID: "op-0-0", Object: "alert/a", Step: 0, Payload: json.RawMessage(`{"id":"a"}`)}
		if err := wire.CallHeader(ctx, nc, wire.HookSubject(testPrefix, schemas.HookAlertPreNotify, "remember"),
			nats.Header{wire.HeaderIdempotencyKey: {schemas.StepKey("op-0-0", 0)}}, req, &resp); err != nil {
			t.Fatal(err)
		}
		return string(resp.Patch)
	}
	first, second := call(), call()
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 1 || keys[0] != "op-0-0/0" || first != second || first != `{"labels":{"seen":"op-0-0/0"}}` || answers.Repeats() != 1 {
		t.Fatalf("keys %v, answers %s and %s, %d repeats", keys, first, second, answers.Repeats())
	}
}
