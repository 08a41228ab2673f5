package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// labelStep is a gate answer that adds the label stepN=N, so the final
// alert shows which steps' patches it got.
func labelStep(n int) func(schemas.HookRequest) (schemas.HookResponse, error) {
	return func(schemas.HookRequest) (schemas.HookResponse, error) {
		return schemas.HookResponse{Patch: json.RawMessage(fmt.Sprintf(`{"labels":{"step%d":"%d"}}`, n, n))}, nil
	}
}

// chainPlugins starts n alert.pre_notify gates, step1..stepN in that
// order (priority i); answers[i] overrides step i+1's answer.
func chainPlugins(t *testing.T, url string, tb *testBus, n int, answers map[int]func(schemas.HookRequest) (schemas.HookResponse, error)) []*fakePlugin {
	t.Helper()
	var ps []*fakePlugin
	for i := range n {
		a := labelStep(i + 1)
		if answers[i] != nil {
			a = answers[i]
		}
		ps = append(ps, hookPlugin(t, url, tb, fmt.Sprintf("step%d", i+1), i,
			[]schemas.HookSpec{{Hook: schemas.HookAlertPreNotify, Timeout: schemas.Duration(30 * time.Second)}},
			map[string]func(schemas.HookRequest) (schemas.HookResponse, error){schemas.HookAlertPreNotify: a}))
	}
	return ps
}

// A chain run is in the journal step by step: the operation (done, with
// its reply), the head, every step's answer and the record; every step
// request carries its idempotency key (chain id/step); chains.get and
// chains.list read it back.
func TestChainJournalRecordsEveryStep(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ps := chainPlugins(t, s.ClientURL(), tb, 3, nil)

	var fired schemas.AlertResponse
	if err := callKey(t, tb, schemas.APIAlertsFire, "k-journal", schemas.AlertFireRequest{ID: "j1", Severity: "warning", Summary: "s"}, &fired); err != nil {
		t.Fatal(err)
	}
	if len(fired.Chains) != 1 || len(fired.Chains[0].Steps) != 3 || fired.Chains[0].Resumed {
		t.Fatalf("chains: %+v", fired.Chains)
	}
	id := fired.Chains[0].ID
	op, _, n, ok := parseChainID(id)
	if !ok || n != 0 {
		t.Fatalf("chain id %q: want OP-TOKEN-0", id)
	}
	for i, p := range ps {
		if keys := p.hookCallKeys(); len(keys) != 1 || keys[0] != schemas.StepKey(id, i) {
			t.Errorf("%s got keys %v, want [%s]", p.manifest.Name, keys, schemas.StepKey(id, i))
		}
	}
	for i := 1; i <= 3; i++ {
		if fired.Alert.Labels[fmt.Sprintf("step%d", i)] != strconv.Itoa(i) {
			t.Fatalf("labels %v: step%d's patch missing", fired.Alert.Labels, i)
		}
	}

	// Done: the answer and the chain's record are in the journal; the run
	// entry is a done marker.
	j := tb.b.journal
	ctx := context.Background()
	_, token, _, _ := parseChainID(id)
	var entries map[string][]byte
	var err error
	waitFor(t, "the answer recorded", func() bool {
		entries, err = j.entries(ctx, op)
		return err == nil && entries[doneEntry(token)] != nil
	})
	var d opDone
	if err := json.Unmarshal(entries[doneEntry(token)], &d); err != nil {
		t.Fatalf("done entry: %v (entries %d)", err, len(entries))
	}
	if d.State != schemas.OperationDone || d.Endpoint != schemas.APIAlertsFire || d.Key != "k-journal" || d.Owner != j.owner ||
		len(d.Result) == 0 || len(d.Chains) != 1 || d.Chains[0].ID != id || len(d.Request) != 0 {
		t.Fatalf("done entry: %+v", d)
	}
	for _, e := range []string{id + ".h", id + ".p", id + ".0", id + ".1", id + ".2"} {
		if _, ok := entries[e]; !ok {
			t.Errorf("no journal entry %s", e)
		}
	}
	var marker opEntry
	if _, found, _ := j.get(ctx, j.runSubject(op), &marker); !found || marker.State != schemas.OperationDone {
		t.Fatalf("run entry after the answer: %+v (found %v), want the done marker", marker, found)
	}
	var h chainHead
	_ = json.Unmarshal(entries[id+".h"], &h)
	rebuilt, err := tb.b.rebuildChain(h, entries)
	if err != nil || outcomes(rebuilt) != outcomes(d.Chains[0]) || rebuilt.Outcome != d.Chains[0].Outcome {
		t.Fatalf("rebuilt %+v (%v), want the recorded %+v", rebuilt, err, d.Chains[0])
	}

	var got schemas.ChainStatus
	tb.mustCall(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: id}, &got)
	if got.Chain.ID != id || got.Chain.Outcome != schemas.ChainCompleted || len(got.Chain.Steps) != 3 ||
		got.Operation.State != schemas.OperationDone || got.Operation.ID != op || got.Operation.Endpoint != schemas.APIAlertsFire {
		t.Fatalf("chains.get: %+v", got)
	}
	var reply schemas.AlertResponse
	if err := json.Unmarshal(got.Operation.Result, &reply); err != nil || reply.EventID != fired.EventID {
		t.Fatalf("chains.get result %s: %v", got.Operation.Result, err)
	}

	err = tb.call(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: "nope-0-0"}, nil)
	wantCode(t, err, schemas.CodeNotFound, "id")
	err = tb.call(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: "not a chain"}, nil)
	wantCode(t, err, schemas.CodeInvalidField, "id")

	// A second alert, then the list: newest first, filtered by object.
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "j2", Severity: "warning", Summary: "s"}, nil)
	var list schemas.ChainListResponse
	tb.mustCall(t, schemas.APIChainsList, schemas.ChainListRequest{}, &list)
	if len(list.Chains) != 2 || list.Chains[0].Object != "alert/j2" || list.Chains[1].ID != id ||
		list.Chains[1].Outcome != schemas.ChainCompleted || list.Chains[1].Steps != 3 {
		t.Fatalf("chains.list: %+v", list)
	}
	tb.mustCall(t, schemas.APIChainsList, schemas.ChainListRequest{Object: "alert/j1"}, &list)
	if len(list.Chains) != 1 || list.Chains[0].ID != id {
		t.Fatalf("chains.list for alert/j1: %+v", list)
	}
	tb.mustCall(t, schemas.APIChainsList, schemas.ChainListRequest{Limit: 1}, &list)
	if len(list.Chains) != 1 || !list.Truncated || list.Chains[0].Object != "alert/j2" {
		t.Fatalf("chains.list limit 1: %+v", list)
	}
}

// blockingStep answers like labelStep(n), but its first call waits until
// release is closed (a plugin busy with the step when the broker dies);
// calls arrive on calls.
func blockingStep(n int, release <-chan struct{}, calls chan<- string) func(schemas.HookRequest) (schemas.HookResponse, error) {
	var once sync.Once
	answer := labelStep(n)
	return func(r schemas.HookRequest) (schemas.HookResponse, error) {
		first := false
		once.Do(func() { first = true })
		calls <- r.ChainID
		if first {
			<-release
		}
		return answer(r)
	}
}

// crash cuts a broker off the bus at once, as kill -9 would: it can write
// nothing more, and its API service (which owns its operations) is gone.
func crash(tb *testBus) {
	tb.b.nc.Close()
	tb.stop()
}

// The broker dies while step 3 of a 5-step chain runs; another broker on
// the bus takes the operation over with no caller retrying (the resumer):
// steps 1 and 2 are not called again (their answers come from the
// journal), step 3 is sent again with the same key, 4 and 5 run once, and
// the alert is stored and fired once. The caller's retry with its key
// then gets the reply, and chains.get tells the story.
func TestChainResumesOnAnotherBrokerAfterCrash(t *testing.T) {
	s := startServer(t)
	a := startBroker(t, Config{NATSURL: s.ClientURL()})
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	calls := make(chan string, 4)
	ps := chainPlugins(t, s.ClientURL(), a, 5, map[int]func(schemas.HookRequest) (schemas.HookResponse, error){
		2: blockingStep(3, release, calls),
	})

	const key = "k-crash"
	req := schemas.AlertFireRequest{ID: "crash-1", Severity: "critical", Summary: "resumed"}
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		first <- wire.CallHeader(ctx, a.nc, wire.APISubject("plugbus", schemas.APIAlertsFire), nats.Header{wire.HeaderIdempotencyKey: {key}}, req, nil)
	}()
	var chain string
	select {
	case chain = <-calls:
	case <-time.After(20 * time.Second):
		t.Fatal("step 3 was never called")
	}
	// While step 3 runs, chains.get rebuilds the chain from its journal.
	var running schemas.ChainStatus
	a.mustCall(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: chain}, &running)
	if running.Chain.Outcome != schemas.ChainRunning || len(running.Chain.Steps) != 2 || running.Operation.State != schemas.OperationRunning ||
		running.Chain.Steps[1].Outcome != schemas.StepPatched {
		t.Fatalf("chains.get mid-chain: %+v", running)
	}
	crash(a)
	if err := <-first; err == nil {
		t.Fatal("the crashed broker answered")
	}

	b := startBroker(t, Config{NATSURL: s.ClientURL()})
	select {
	case again := <-calls:
		if again != chain {
			t.Fatalf("step 3 sent again in chain %s, want the same chain %s", again, chain)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the operation was not resumed: step 3 never sent again")
	}
	close(release)

	var op schemas.ChainStatus
	waitFor(t, "the resumed operation answered", func() bool {
		op = schemas.ChainStatus{}
		return b.call(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: chain}, &op) == nil && op.Operation.State == schemas.OperationDone
	})
	if op.Operation.Error != nil || op.Operation.Resumes < 1 || !op.Chain.Resumed || op.Chain.Outcome != schemas.ChainCompleted {
		t.Fatalf("chains.get after the resume: %+v", op)
	}
	for i, st := range op.Chain.Steps {
		if wantReplayed := i < 2; st.Replayed != wantReplayed || st.Outcome != schemas.StepPatched {
			t.Errorf("step %d %s: outcome %s, replayed %v (want patched, replayed %v)", i+1, st.Plugin, st.Outcome, st.Replayed, wantReplayed)
		}
	}
	for i, p := range ps {
		keys := p.hookCallKeys()
		want := 1
		if i == 2 {
			want = 2 // the call the dead broker made, and the resumed one
		}
		if len(keys) != want {
			t.Errorf("%s called %d times (%v), want %d", p.manifest.Name, len(keys), keys, want)
		}
		for _, k := range keys {
			if k != schemas.StepKey(chain, i) {
				t.Errorf("%s got key %s, want %s", p.manifest.Name, k, schemas.StepKey(chain, i))
			}
		}
	}

	// The caller retries with its key: the same answer, nothing new.
	var again schemas.AlertResponse
	if err := callKey(t, b, schemas.APIAlertsFire, key, req, &again); err != nil {
		t.Fatal(err)
	}
	var result schemas.AlertResponse
	if err := json.Unmarshal(op.Operation.Result, &result); err != nil || result.EventID == "" || again.EventID != result.EventID {
		t.Fatalf("retry answered event %q, the resumed operation %q (%v)", again.EventID, result.EventID, err)
	}
	for i := 1; i <= 5; i++ {
		if again.Alert.Labels[fmt.Sprintf("step%d", i)] != strconv.Itoa(i) {
			t.Fatalf("labels %v: step%d's patch missing", again.Alert.Labels, i)
		}
	}
	if evs := eventsOf(t, b, schemas.TypeAlertFired, "alert/crash-1"); len(evs) != 1 {
		t.Fatalf("%d fired events, want 1", len(evs))
	}
	for _, p := range ps {
		if n := len(p.hookCallKeys()); n > 2 {
			t.Fatalf("%s called again by the retry (%d calls)", p.manifest.Name, n)
		}
	}
}

// A caller still waiting when its broker dies mid-chain gets the answer
// on its own request, without retrying: the broker that resumes the
// operation (here another one, the call had no idempotency key) sends the
// final reply to the caller's reply subject too.
func TestWaitingCallerGetsTheResumedAnswer(t *testing.T) {
	s := startServer(t)
	a := startBroker(t, Config{NATSURL: s.ClientURL()})
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	calls := make(chan string, 4)
	chainPlugins(t, s.ClientURL(), a, 3, map[int]func(schemas.HookRequest) (schemas.HookResponse, error){
		1: blockingStep(2, release, calls),
	})
	caller, err := nats.Connect(s.ClientURL(), a.opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()

	type answer struct {
		resp schemas.AlertResponse
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		var r answer
		r.err = wire.Call(ctx, caller, wire.APISubject("plugbus", schemas.APIAlertsFire),
			schemas.AlertFireRequest{ID: "waits-1", Severity: "info", Summary: "the caller waits"}, &r.resp)
		got <- r
	}()
	var chain string
	select {
	case chain = <-calls:
	case <-time.After(20 * time.Second):
		t.Fatal("step 2 was never called")
	}
	crash(a)
	b := startBroker(t, Config{NATSURL: s.ClientURL()})
	select {
	case again := <-calls:
		if again != chain {
			t.Fatalf("step 2 sent again in chain %s, want %s", again, chain)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the operation was not resumed")
	}
	close(release)
	var r answer
	select {
	case r = <-got:
	case <-time.After(40 * time.Second):
		t.Fatal("the waiting caller got no answer")
	}
	if r.err != nil || r.resp.EventID == "" || len(r.resp.Chains) != 1 || r.resp.Chains[0].ID != chain || !r.resp.Chains[0].Resumed {
		t.Fatalf("the waiting caller got %+v, %v", r.resp, r.err)
	}
	for i := 1; i <= 3; i++ {
		if r.resp.Alert.Labels[fmt.Sprintf("step%d", i)] != strconv.Itoa(i) {
			t.Fatalf("labels %v: step%d's patch missing", r.resp.Alert.Labels, i)
		}
	}
	if evs := eventsOf(t, b, schemas.TypeAlertFired, "alert/waits-1"); len(evs) != 1 {
		t.Fatalf("%d fired events, want 1", len(evs))
	}
}

// An answer that says to retry (a step timed out) ends the attempt: a
// retry with the same key runs the chain afresh, under a new chain id
// (attempt 1), so its steps get new keys.
func TestChainRetryAfterTransientAnswerIsANewAttempt(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	var mu sync.Mutex
	slow := true
	p := hookPlugin(t, s.ClientURL(), tb, "flaky", 0,
		[]schemas.HookSpec{{Hook: schemas.HookAlertPreNotify, Timeout: schemas.Duration(200 * time.Millisecond)}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){schemas.HookAlertPreNotify: func(schemas.HookRequest) (schemas.HookResponse, error) {
			mu.Lock()
			s := slow
			slow = false
			mu.Unlock()
			if s {
				time.Sleep(time.Second)
			}
			return schemas.HookResponse{}, nil
		}})
	req := schemas.AlertFireRequest{ID: "flaky-1", Severity: "warning", Summary: "s"}
	err := callKey(t, tb, schemas.APIAlertsFire, "k-flaky", req, nil)
	wantCode(t, err, schemas.CodeTimeout, "")
	var ok schemas.AlertResponse
	if err := callKey(t, tb, schemas.APIAlertsFire, "k-flaky", req, &ok); err != nil {
		t.Fatal(err)
	}
	keys := p.hookCallKeys()
	if len(keys) != 2 || keys[0] == keys[1] {
		t.Fatalf("keys %v: want two attempts with different keys", keys)
	}
	second := ok.Chains[0].ID
	if keys[1] != schemas.StepKey(second, 0) {
		t.Fatalf("second run: chain %s, key %s", second, keys[1])
	}
	firstChain, _, _ := strings.Cut(keys[0], "/")
	var st schemas.ChainStatus
	tb.mustCall(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: firstChain}, &st)
	if st.Chain.Outcome != schemas.ChainFailed || st.Operation.Attempt != 0 || st.Operation.State != schemas.OperationDone ||
		st.Operation.Error == nil || st.Operation.Error.Code != schemas.CodeTimeout {
		t.Fatalf("the first attempt's chain: %+v", st)
	}
	var st2 schemas.ChainStatus
	waitFor(t, "the second attempt's answer recorded", func() bool {
		st2 = schemas.ChainStatus{}
		return tb.call(t, schemas.APIChainsGet, schemas.ChainGetRequest{ID: second}, &st2) == nil && st2.Operation.State == schemas.OperationDone
	})
	if st2.Chain.Outcome != schemas.ChainCompleted || st2.Operation.Attempt != 1 || st2.Operation.Error != nil {
		t.Fatalf("the second attempt's chain: %+v", st2)
	}
}

// A call without an idempotency key is journalled under one the broker
// makes up, so it can be resumed too; its reply is kept under that key.
func TestChainJournalWithoutCallerKey(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	chainPlugins(t, s.ClientURL(), tb, 1, nil)
	var fired schemas.AlertResponse
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "nokey", Severity: "warning", Summary: "s"}, &fired)
	j := tb.b.journal
	op, _, _, _ := parseChainID(fired.Chains[0].ID)
	_, token, _, _ := parseChainID(fired.Chains[0].ID)
	var entries map[string][]byte
	waitFor(t, "the answer recorded", func() bool {
		var err error
		entries, err = j.entries(context.Background(), op)
		return err == nil && entries[doneEntry(token)] != nil
	})
	var e opDone
	if err := json.Unmarshal(entries[doneEntry(token)], &e); err != nil {
		t.Fatalf("done entry: %v", err)
	}
	if !strings.HasPrefix(e.Key, brokerKeyPrefix) || len(e.Key) <= len(brokerKeyPrefix) || e.State != schemas.OperationDone {
		t.Fatalf("done record: %+v", e)
	}
	if _, ok := tb.b.lookupReply(context.Background(), requestKey(schemas.APIAlertsFire, e.Subject, e.Key)); !ok {
		t.Fatal("the reply is not kept under the broker's key")
	}
}

func TestParseChainID(t *testing.T) {
	for _, tc := range []struct {
		id        string
		op, token string
		n         int
		ok        bool
	}{
		{"3bX9kQ2mVx2dY9pLr0sT8u-mbq2x1k0-1", "3bX9kQ2mVx2dY9pLr0sT8u", "mbq2x1k0", 1, true},
		{chainID("abc", attemptToken(time.UnixMilli(1700000000000)), 3), "abc", "loyw3v28", 3, true},
		{"abc-1", "", "", 0, false},
		{"a.b-1-2", "", "", 0, false},
		{"-1-2", "", "", 0, false},
		{"abc--2", "", "", 0, false},
		{"abc-x-y", "", "", 0, false},
	} {
		op, token, n, ok := parseChainID(tc.id)
		if ok != tc.ok || ok && (op != tc.op || token != tc.token || n != tc.n) {
			t.Errorf("parseChainID(%q) = %q %q %d %v", tc.id, op, token, n, ok)
		}
	}
}
