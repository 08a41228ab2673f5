package broker

// The chain journal (docs/hooks.md, "Resumable chains"). Every hook chain
// an API operation runs is journalled in the stream PLUGBUS_CHAINS, so a
// broker that dies mid-chain loses nothing: the chain resumes from its last
// completed step, on the restarted broker or on another one, and the
// operation completes once (its commit is idempotent by operation id,
// commit.go). One message per subject, below "<prefix>.chains.<op>.":
//
//	op        the operation: endpoint, subject, idempotency key, request,
//	          attempt, owner (the broker running it), state, and its
//	          answer once done
//	run       "running" while the operation runs; once it answered, a
//	          "done" marker that expires (the resumer watches these only)
//	<a>-<n>.h the head of the op's n-th chain of attempt a: hook, object,
//	          steps (the chain as it runs), start
//	<a>-<n>.p its input: the payload and the env seed
//	<a>-<n>.<i> step i's result: the plugin's answer or error, or that
//	          the plugin was not ACTIVE, and how long it took
//	<a>-<n>.e the chain's record once it is finished
//
// What is written when, and what waits for it:
//
//   - The op entry is created when the operation's first chain with steps
//     starts, and waited for (one round trip per operation): finding it
//     already there is how a retry, or a resubmission by the resumer,
//     learns that it continues an interrupted run.
//   - The head and input are published without waiting, while step 0 is
//     called: nothing depends on them until step 0's answer is used, and a
//     crash before they are stored only makes the resumed run call step 0
//     again, with the same key.
//   - Step i's result is stored, and waited for, before the broker acts on
//     it (applies it, calls step i+1, commits): one round trip per step.
//     "Step i+1 started" needs no write of its own: it is implied by step
//     i's result (by the head for step 0), and a resumed run sends step
//     i+1 again with the same idempotency key (schemas.StepKey).
//   - The end record and the op's answer are published without waiting on
//     the hot path (the request's pending publishes, or the reply, cover
//     them); losing them in a crash loses nothing: a chain whose steps are
//     all there is rebuilt from them, and an operation still "running"
//     after its broker is gone is resubmitted and answered from the
//     requests bucket.
//
// Results are written with "expect no message on this subject": when two
// brokers run the same operation (a client's retry on one while another
// resumes it), the first result stored for a step is the one both use.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// brokerKeyPrefix starts the idempotency keys the broker gives calls that
// came without one: they are resumed under it.
const brokerKeyPrefix = "plugbus-broker-"

// runMarkTTL is how long the "done" marker of an operation stays in the
// journal's run index: long enough for every resumer's watch to see it.
const runMarkTTL = time.Minute

// journal is the broker's side of the chain journal.
type journal struct {
	b      *Broker
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string

	// owner is this broker's id in op entries: its API service instance
	// id, which a ping finds while it runs (resume.go).
	owner    string
	stopping chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	running map[string]int // operations this broker's handlers run now
}

// ensureJournal creates (or updates) the journal's stream.
func ensureJournal(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              schemas.StreamChains,
		Description:       "plugbus chain journal: every hook chain run, step by step, so a broker crash resumes it (broker only)",
		Subjects:          []string{wire.ChainsSubjects(cfg.Prefix)},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: 1,
		MaxAge:            cfg.ChainRetention,
		MaxBytes:          cfg.ChainMaxBytes,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
		AllowMsgTTL:       true,
		Duplicates:        time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", schemas.StreamChains, err)
	}
	return s, nil
}

func newJournal(b *Broker, stream jetstream.Stream) *journal {
	return &journal{b: b, js: b.js, stream: stream, prefix: b.cfg.Prefix, running: map[string]int{}, stopping: make(chan struct{})}
}

// stop says the broker is stopping: an operation cut by the stop is left
// "running" for the next broker to resume, not marked done.
func (j *journal) stop() { j.stopOnce.Do(func() { close(j.stopping) }) }

func (j *journal) isStopping() bool {
	select {
	case <-j.stopping:
		return true
	default:
		return false
	}
}

func (j *journal) markRunning(op string) {
	j.mu.Lock()
	j.running[op]++
	j.mu.Unlock()
}

func (j *journal) unmarkRunning(op string) {
	j.mu.Lock()
	if j.running[op]--; j.running[op] <= 0 {
		delete(j.running, op)
	}
	j.mu.Unlock()
}

// runsHere reports whether one of this broker's handlers runs op now.
func (j *journal) runsHere(op string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.running[op] > 0
}

// Subjects of the journal.
func (j *journal) opSubject(op string) string  { return wire.ChainsSubject(j.prefix, op, "op") }
func (j *journal) runSubject(op string) string { return wire.ChainsSubject(j.prefix, op, "run") }
func (j *journal) chainSubject(id, what string) string {
	op, rest, _ := strings.Cut(id, "-")
	return wire.ChainsSubject(j.prefix, op, rest, what)
}

// chainID is the id of an operation's n-th chain in attempt a: the same
// operation resumed gets the same ids, and so the same step keys.
func chainID(op string, attempt, n int) string {
	return op + "-" + strconv.Itoa(attempt) + "-" + strconv.Itoa(n)
}

// parseChainID splits a chain id into its operation, attempt and number.
func parseChainID(id string) (op string, attempt, n int, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 || parts[0] == "" {
		return "", 0, 0, false
	}
	for _, c := range parts[0] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "", 0, 0, false
		}
	}
	a, err1 := strconv.Atoi(parts[1])
	k, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || a < 0 || k < 0 {
		return "", 0, 0, false
	}
	return parts[0], a, k, true
}

// Journal entries.
type (
	// opEntry is an operation's entry ("op").
	opEntry struct {
		Op       string `json:"op"`
		Endpoint string `json:"endpoint"`
		Subject  string `json:"subject"`
		// Key is the idempotency key a resubmission carries: the
		// caller's, or one the broker made up for a call that had none.
		Key     string          `json:"key"`
		Request json.RawMessage `json:"request,omitempty"`
		Attempt int             `json:"attempt"`
		Owner   string          `json:"owner"`
		State   string          `json:"state"`
		Resumes int             `json:"resumes,omitempty"`
		// StartedAt is when the attempt started.
		StartedAt time.Time       `json:"started_at"`
		UpdatedAt time.Time       `json:"updated_at"`
		Result    json.RawMessage `json:"result,omitempty"`
		Error     *schemas.Error  `json:"error,omitempty"`
	}
	// runMark is the run index entry of an operation ("run").
	runMark struct {
		State string    `json:"state"`
		Owner string    `json:"owner,omitempty"`
		At    time.Time `json:"at"`
	}
	// chainHead is a chain's head ("h").
	chainHead struct {
		ID        string             `json:"id"`
		Op        string             `json:"op"`
		Endpoint  string             `json:"endpoint,omitempty"`
		Hook      string             `json:"hook"`
		Object    string             `json:"object"`
		StartedAt time.Time          `json:"started_at"`
		Steps     []schemas.HookStep `json:"steps"`
	}
	// chainInput is a chain's input ("p").
	chainInput struct {
		Payload json.RawMessage   `json:"payload"`
		Env     map[string]string `json:"env,omitempty"`
	}
	// stepEntry is what happened when a step ran ("<i>"): the plugin's
	// answer, or the error of the call, or that the plugin was not
	// ACTIVE (it was not called). Applying it to the chain (chainState)
	// is deterministic, so a replay gives the record and the result the
	// first run had.
	stepEntry struct {
		Plugin     string                `json:"plugin"`
		Response   *schemas.HookResponse `json:"response,omitempty"`
		Error      *schemas.Error        `json:"error,omitempty"`
		Inactive   schemas.PluginState   `json:"inactive,omitempty"`
		DurationMs float64               `json:"duration_ms"`
		At         time.Time             `json:"at"`
		// replayed: read from the journal, not answered to this run.
		replayed bool
	}
)

// errJournalConflict is a journal write that found its subject written
// already (or at another sequence than expected).
var errJournalConflict = errors.New("journal entry written meanwhile")

func journalConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// journalError is the answer of an operation whose journal cannot be
// written or read: chains are not run unjournalled (a crash could not
// resume them), so nothing more is done.
func journalError(what string, err error) error {
	e := schemas.Errorf(schemas.CodeUnavailable, "", "cannot %s in the chain journal (stream %s): %v; the operation stopped there and is not committed: retry with the same idempotency key (is JetStream available?)",
		what, schemas.StreamChains, err)
	e.Details = map[string]any{"committed": false}
	return e
}

// publish writes v on subject; expect, when set, is the sequence the
// subject's last message must have (0: none).
func (j *journal) publishAsync(subject string, v any, expect *uint64, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	return j.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: body}, opts...)
}

// await waits for one write and returns its sequence; errJournalConflict
// when its expectation failed.
func await(ctx context.Context, f jetstream.PubAckFuture) (uint64, error) {
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err := <-f.Err():
		if journalConflict(err) {
			return 0, errJournalConflict
		}
		return 0, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// write publishes v on subject and waits for it.
func (j *journal) write(ctx context.Context, subject string, v any, expect *uint64) (uint64, error) {
	f, err := j.publishAsync(subject, v, expect)
	if err != nil {
		return 0, err
	}
	return await(ctx, f)
}

var none uint64 // "no message yet" for an expectation

// get reads subject's message into v; found is false when there is none.
func (j *journal) get(ctx context.Context, subject string, v any) (seq uint64, found bool, err error) {
	m, err := j.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		return 0, false, fmt.Errorf("decode %s: %w", subject, err)
	}
	return m.Sequence, true, nil
}

// opRun is one API request's operation as the journal sees it; handle
// puts it in the request's context, and the chains the handler runs use
// it. It writes nothing until a chain with steps starts.
type opRun struct {
	j                     *journal
	op, endpoint, subject string
	key                   string
	request               []byte
	begun, resumed        bool
	beginErr              error
	attempt, chains       int
	entry                 opEntry
	seq                   uint64
	// ends are the writes of the chains' records, waited for by finish.
	ends []jetstream.PubAckFuture
}

type opRunKey struct{}

func withOpRun(ctx context.Context, r *opRun) context.Context {
	return context.WithValue(ctx, opRunKey{}, r)
}

func opRunOf(ctx context.Context) *opRun {
	r, _ := ctx.Value(opRunKey{}).(*opRun)
	return r
}

// newOpRun prepares the journal of a request's operation: op is its id,
// key the idempotency key that leads to it.
func (j *journal) newOpRun(op, endpoint, subject, key string, request []byte) *opRun {
	if j == nil {
		return nil
	}
	return &opRun{j: j, op: op, endpoint: endpoint, subject: subject, key: key, request: request}
}

// journalled reports whether the operation has an entry (its reply must
// then be kept, so a resubmission finds it).
func (r *opRun) journalled() bool { return r != nil && r.begun && r.beginErr == nil }

// begin writes the operation's entry, or takes over the one an earlier
// run left: one still running is resumed (same attempt, so the same chain
// ids and step keys); one that answered (with an error that said to
// retry, or long ago) starts a new attempt.
func (r *opRun) begin(ctx context.Context) error {
	if r.begun {
		return r.beginErr
	}
	r.begun = true
	r.beginErr = r.doBegin(ctx)
	if r.beginErr != nil {
		r.j.unmarkRunning(r.op)
	}
	return r.beginErr
}

func (r *opRun) doBegin(ctx context.Context) error {
	j := r.j
	// Before the entry exists: the resumer never takes an operation this
	// broker runs.
	j.markRunning(r.op)
	now := time.Now().UTC()
	runF, err := j.publishAsync(j.runSubject(r.op), runMark{State: schemas.OperationRunning, Owner: j.owner, At: now}, nil)
	if err != nil {
		return journalError("start the operation", err)
	}
	fresh := opEntry{Op: r.op, Endpoint: r.endpoint, Subject: r.subject, Key: r.key, Request: json.RawMessage(r.request),
		Owner: j.owner, State: schemas.OperationRunning, StartedAt: now, UpdatedAt: now}
	for attempt := 0; ; attempt++ {
		if attempt >= 10 {
			return journalError("start the operation", errors.New("its entry keeps changing"))
		}
		seq, err := j.write(ctx, j.opSubject(r.op), fresh, &none)
		if err == nil {
			r.entry, r.seq, r.attempt = fresh, seq, fresh.Attempt
			break
		}
		if !errors.Is(err, errJournalConflict) {
			return journalError("start the operation", err)
		}
		var cur opEntry
		seq, found, err := j.get(ctx, j.opSubject(r.op), &cur)
		if err != nil {
			return journalError("read the operation", err)
		}
		if !found {
			continue // gone meanwhile (expired): create it
		}
		next := cur
		if cur.State == schemas.OperationRunning {
			// An interrupted run (or one another broker runs now): go on
			// with it.
			r.resumed = true
			if cur.Owner != j.owner {
				next.Resumes++
			}
		} else {
			// It answered: this is a new attempt.
			r.resumed = false
			next = fresh
			next.Attempt = cur.Attempt + 1
		}
		next.Owner, next.UpdatedAt = j.owner, now
		newSeq, err := j.write(ctx, j.opSubject(r.op), next, &seq)
		if errors.Is(err, errJournalConflict) {
			continue
		}
		if err != nil {
			return journalError("take over the operation", err)
		}
		r.entry, r.seq, r.attempt = next, newSeq, next.Attempt
		break
	}
	if _, err := await(ctx, runF); err != nil {
		return journalError("start the operation", err)
	}
	if r.resumed {
		j.b.log.Info().Str("op", r.op).Str("endpoint", r.endpoint).Int("attempt", r.attempt).Int("resumes", r.entry.Resumes).
			Msg("resuming an operation from the chain journal")
	}
	return nil
}

// transientCode reports whether an answer says to retry: such a reply is
// not kept (idempotency.go), and the next attempt runs the chains again.
func transientCode(code string) bool {
	switch code {
	case schemas.CodeTimeout, schemas.CodeUnavailable, schemas.CodeInternal, schemas.CodeNoResponders:
		return true
	}
	return false
}

// finish records the operation's answer and returns a function that waits
// for the write (call it after keeping the reply). An operation cut short
// by the broker's stop is left running, for the next broker to resume.
func (r *opRun) finish(ctx context.Context, msg *nats.Msg) (wait func()) {
	if !r.journalled() {
		return func() {}
	}
	j := r.j
	code := msg.Header.Get(schemas.HeaderErrorCode)
	if transientCode(code) && j.isStopping() {
		j.unmarkRunning(r.op)
		return func() {}
	}
	e := r.entry
	e.State, e.UpdatedAt, e.Request = schemas.OperationDone, time.Now().UTC(), nil
	if code == "" {
		e.Result = json.RawMessage(msg.Data)
		if !json.Valid(e.Result) {
			e.Result = nil
		}
	} else {
		e.Error = &schemas.Error{}
		if json.Unmarshal(msg.Data, e.Error) != nil || e.Error.Code == "" {
			e.Error = &schemas.Error{Code: code, Message: msg.Header.Get(schemas.HeaderError)}
		}
	}
	seq := r.seq
	f1, err1 := j.publishAsync(j.opSubject(r.op), e, &seq)
	f2, err2 := j.publishAsync(j.runSubject(r.op), runMark{State: schemas.OperationDone, At: e.UpdatedAt}, nil, jetstream.WithMsgTTL(runMarkTTL))
	writes := []struct {
		f   jetstream.PubAckFuture
		err error
	}{{f1, err1}, {f2, err2}}
	for _, f := range r.ends {
		writes = append(writes, struct {
			f   jetstream.PubAckFuture
			err error
		}{f, nil})
	}
	return func() {
		defer j.unmarkRunning(r.op)
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishBound)
		defer cancel()
		for _, w := range writes {
			err := w.err
			if err == nil {
				_, err = await(wctx, w.f)
			}
			// A conflict: another broker took the operation over; it
			// records the answer.
			if err != nil && !errors.Is(err, errJournalConflict) {
				j.b.log.Warn().Err(err).Str("op", r.op).Msg("cannot record an operation's answer in the chain journal; the resumer answers it again from the requests bucket")
			}
		}
	}
}

// chainRun is one chain of an operation in the journal.
type chainRun struct {
	r  *opRun
	id string
	// head and input are the journalled ones when the chain resumes.
	head  *chainHead
	input chainInput
	// live: no (more) journalled steps to read.
	live    bool
	pending []jetstream.PubAckFuture
}

// journalChain returns the journal of the next chain of ctx's operation:
// nil when the request has none (or the chain has no steps and nothing to
// resume). It counts every chain the handler runs, with steps or not, so
// a resumed operation's chains get the numbers (and ids) they had.
func (b *Broker) journalChain(ctx context.Context, hook string, hasSteps bool) (*chainRun, error) {
	r := opRunOf(ctx)
	if r == nil {
		return nil, nil
	}
	n := r.chains
	r.chains++
	if !hasSteps && !r.begun {
		return nil, nil
	}
	if err := r.begin(ctx); err != nil {
		return nil, err
	}
	c := &chainRun{r: r, id: chainID(r.op, r.attempt, n), live: true}
	if !r.resumed {
		if !hasSteps {
			return nil, nil
		}
		return c, nil
	}
	var h chainHead
	_, found, err := r.j.get(ctx, r.j.chainSubject(c.id, "h"), &h)
	if err != nil {
		return nil, journalError("read chain "+c.id, err)
	}
	if !found {
		if !hasSteps {
			return nil, nil
		}
		return c, nil
	}
	if h.Hook != hook {
		return nil, schemas.Errorf(schemas.CodeInternal, "", "chain %s of operation %s was a %s chain, and is resumed as %s: the broker's handler changed under the journal", c.id, r.op, h.Hook, hook)
	}
	if _, _, err := r.j.get(ctx, r.j.chainSubject(c.id, "p"), &c.input); err != nil {
		return nil, journalError("read chain "+c.id, err)
	}
	c.head, c.live = &h, false
	return c, nil
}

// resumed reports whether the chain continues a journalled run.
func (c *chainRun) resumed() bool { return c != nil && c.head != nil }

// chainID returns the chain's id, a fresh one without a journal.
func (c *chainRun) chainID() string {
	if c == nil {
		return ""
	}
	return c.id
}

// start journals a fresh chain's head and input, without waiting (the
// first step's result waits for them).
func (c *chainRun) start(hook, object string, steps []schemas.HookStep, payload json.RawMessage, env map[string]string, at time.Time) error {
	if c == nil || c.head != nil {
		return nil
	}
	j := c.r.j
	f1, err := j.publishAsync(j.chainSubject(c.id, "h"), chainHead{ID: c.id, Op: c.r.op, Endpoint: c.r.endpoint, Hook: hook, Object: object,
		StartedAt: at.UTC(), Steps: steps}, &none)
	if err != nil {
		return journalError("start chain "+c.id, err)
	}
	f2, err := j.publishAsync(j.chainSubject(c.id, "p"), chainInput{Payload: payload, Env: env}, &none)
	if err != nil {
		return journalError("start chain "+c.id, err)
	}
	c.pending = append(c.pending, f1, f2)
	return nil
}

// recorded returns step i's journalled result, when the chain resumes and
// the journal has it.
func (c *chainRun) recorded(ctx context.Context, i int) (stepEntry, bool, error) {
	var e stepEntry
	if c == nil || c.live {
		return e, false, nil
	}
	_, found, err := c.r.j.get(ctx, c.r.j.chainSubject(c.id, strconv.Itoa(i)), &e)
	if err != nil {
		return e, false, journalError(fmt.Sprintf("read step %d of chain %s", i, c.id), err)
	}
	if !found {
		// The first step without a result: from here on the chain runs.
		c.live = true
		return e, false, nil
	}
	e.replayed = true
	return e, true, nil
}

// record journals step i's result and waits for it (and for the head):
// only then does the broker act on it. When another run stored a result
// for the step first, that one is returned, to be used instead.
func (c *chainRun) record(ctx context.Context, i int, e stepEntry) (stepEntry, error) {
	if c == nil {
		return e, nil
	}
	j := c.r.j
	e.At = time.Now().UTC()
	subject := j.chainSubject(c.id, strconv.Itoa(i))
	f, err := j.publishAsync(subject, e, &none)
	if err != nil {
		return e, journalError(fmt.Sprintf("record step %d of chain %s", i, c.id), err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishBound)
	defer cancel()
	for _, p := range c.pending {
		// The head and input: a conflict means another run wrote them.
		if _, err := await(wctx, p); err != nil && !errors.Is(err, errJournalConflict) {
			return e, journalError("start chain "+c.id, err)
		}
	}
	c.pending = nil
	_, err = await(wctx, f)
	if errors.Is(err, errJournalConflict) {
		var first stepEntry
		_, found, gerr := j.get(wctx, subject, &first)
		if gerr == nil && found {
			first.replayed = true
			return first, nil
		}
		if gerr != nil {
			err = gerr
		}
	}
	if err != nil {
		return e, journalError(fmt.Sprintf("record step %d of chain %s", i, c.id), err)
	}
	return e, nil
}

// end journals the chain's record, without waiting: the operation's
// finish waits for it after the reply is kept.
func (c *chainRun) end(rec schemas.ChainRecord) {
	if c == nil {
		return
	}
	f, err := c.r.j.publishAsync(c.r.j.chainSubject(c.id, "e"), rec, nil)
	if err != nil {
		c.r.j.b.log.Warn().Err(err).Str("chain", c.id).Msg("cannot journal a chain's record; chains.get rebuilds it from its steps")
		return
	}
	c.r.ends = append(c.r.ends, f)
}
