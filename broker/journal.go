package broker

// The chain journal (docs/hooks.md, "Resumable chains"). Every hook chain
// an API operation runs is journalled in the stream PLUGBUS_CHAINS, so a
// broker that dies mid-chain loses nothing: the chain resumes from its last
// completed step, on the restarted broker or on another one, and the
// operation completes once (its commit is idempotent by operation id,
// commit.go). Two subjects per operation, below "<prefix>.chains.":
//
//	run.<op>  the operation while it runs: endpoint, subject, idempotency
//	          key, request, attempt, owner (the broker running it), the
//	          reply subject its caller waits on and until when. One
//	          message, replaced compare-and-set; once the operation
//	          answered, a "done" marker that expires, so the subject goes
//	          (the resumer watches these subjects only).
//	j.<op>    its journal, append-only, one message per entry (header
//	          Plugbus-Journal-Entry): "<chain>.h" a chain's head (hook,
//	          object, steps as they run), "<chain>.p" its input (payload,
//	          env seed), "<chain>.<i>" step i's result (the plugin's answer
//	          or error, or that the plugin was not ACTIVE), and
//	          "done.<attempt>" the answer of an attempt with its chains'
//	          records. It leaves by age (the chain retention): purging it
//	          would cost the server a delete per entry.
//
// So an operation leaves one subject for the retention (the server
// indexes every subject of a stream, a few hundred bytes each).
//
// What is written when, and what waits for it:
//
//   - The run entry is created when the operation's first chain with
//     steps starts, and waited for (one round trip per operation): finding
//     it already there is how a retry, or a resubmission by the resumer,
//     learns that it continues an interrupted run.
//   - A chain's head and input are published without waiting, while step
//     0 is called: nothing depends on them until step 0's answer is used,
//     and a crash before they are stored only makes the resumed run call
//     step 0 again, with the same key.
//   - Step i's result is stored, and waited for, before the broker acts on
//     it (applies it, calls step i+1, commits): one round trip per step.
//     "Step i+1 started" needs no write of its own: it is implied by step
//     i's result (by the head for step 0), and a resumed run sends step
//     i+1 again with the same idempotency key (schemas.StepKey).
//   - The answer and the chain records are written once the reply is
//     kept in the requests bucket; losing them in a crash loses nothing:
//     an operation still "running" after its broker is gone is resubmitted
//     and answered from the requests bucket.
//   - A resumed operation's final answer also goes to the reply subject
//     its caller waits on (answerWaiting), while the caller's deadline
//     lasts: the caller gets it without retrying.
//
// Entries carry their name as message id: when two brokers run the same
// operation (a client's retry on one while another resumes it), the
// stream drops the second result of a step, and both use the first.

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

// markerTTL is how long the done marker of a finished operation's run
// entry stays: long enough for every resumer's watch to see it.
const markerTTL = time.Minute

// headerJournalEntry names a journal message's entry ("<chain>.h", …).
const headerJournalEntry = "Plugbus-Journal-Entry"

// journal is the broker's side of the chain journal.
type journal struct {
	b      *Broker
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string

	// owner is this broker's id in run entries: its API service instance
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
		Name:        schemas.StreamChains,
		Description: "plugbus chain journal: every hook chain run, step by step, so a broker crash resumes it (broker only)",
		Subjects:    []string{wire.ChainsSubjects(cfg.Prefix)},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.ChainRetention,
		MaxBytes:    cfg.ChainMaxBytes,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
		AllowMsgTTL: true,
		AllowRollup: true,
		Duplicates:  2 * time.Minute,
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
func (j *journal) runSubject(op string) string     { return wire.ChainsSubject(j.prefix, "run", op) }
func (j *journal) journalSubject(op string) string { return wire.ChainsSubject(j.prefix, "j", op) }

// doneEntry names the journal entry of an attempt's answer.
func doneEntry(token string) string { return "done." + token }

// chainID is the id of an operation's n-th chain in the attempt that
// started at token: the same operation resumed gets the same ids, and so
// the same step keys; a new attempt gets new ones.
func chainID(op, token string, n int) string {
	return op + "-" + token + "-" + strconv.Itoa(n)
}

// attemptToken names an attempt by its start (base 36 milliseconds).
func attemptToken(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 36) }

// parseChainID splits a chain id into its operation, attempt token and
// number.
func parseChainID(id string) (op, token string, n int, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", 0, false
	}
	for _, c := range parts[0] + parts[1] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "", "", 0, false
		}
	}
	k, err := strconv.Atoi(parts[2])
	if err != nil || k < 0 {
		return "", "", 0, false
	}
	return parts[0], parts[1], k, true
}

// Journal entries.
type (
	// opEntry is an operation's run entry ("run.<op>"); the done marker
	// that replaces it has State done and Attempt only.
	opEntry struct {
		Op       string `json:"op,omitempty"`
		Endpoint string `json:"endpoint,omitempty"`
		Subject  string `json:"subject,omitempty"`
		// Key is the idempotency key a resubmission carries: the
		// caller's, or one the broker made up for a call that had none.
		Key     string          `json:"key,omitempty"`
		Request json.RawMessage `json:"request,omitempty"`
		// Attempt counts the operation's fresh starts; Token names this
		// one (chainID).
		Attempt int    `json:"attempt"`
		Token   string `json:"token,omitempty"`
		Owner   string `json:"owner,omitempty"`
		State   string `json:"state"`
		Resumes int    `json:"resumes,omitempty"`
		// ReplyTo is the reply subject of the request that waits for the
		// operation's answer, ReplyBy its caller's deadline: a broker that
		// completes the operation after a crash answers there too, so a
		// caller still waiting gets the answer without retrying.
		ReplyTo string    `json:"reply_to,omitempty"`
		ReplyBy time.Time `json:"reply_by,omitzero"`
		// StartedAt is when the attempt started.
		StartedAt time.Time `json:"started_at"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	// opDone is an attempt's answer ("done.<attempt>").
	opDone struct {
		opEntry
		Result json.RawMessage       `json:"result,omitempty"`
		Error  *schemas.Error        `json:"error,omitempty"`
		Chains []schemas.ChainRecord `json:"chains,omitempty"`
	}
	// chainHead is a chain's head ("<chain>.h").
	chainHead struct {
		ID        string             `json:"id"`
		Op        string             `json:"op"`
		Endpoint  string             `json:"endpoint,omitempty"`
		Hook      string             `json:"hook"`
		Object    string             `json:"object"`
		StartedAt time.Time          `json:"started_at"`
		Steps     []schemas.HookStep `json:"steps"`
	}
	// chainInput is a chain's input ("<chain>.p").
	chainInput struct {
		Payload json.RawMessage   `json:"payload"`
		Env     map[string]string `json:"env,omitempty"`
	}
	// stepEntry is what happened when a step ran ("<chain>.<i>"): the
	// plugin's answer, or the error of the call, or that the plugin was
	// not ACTIVE (it was not called). Applying it to the chain
	// (chainState) is deterministic, so a replay gives the record and the
	// result the first run had.
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

// errJournalConflict is a write that found its subject changed since it
// was read.
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

// msg builds a journal message.
func journalMsg(subject string, v any, header ...string) (*nats.Msg, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	m := &nats.Msg{Subject: subject, Data: body}
	if len(header) > 0 {
		m.Header = nats.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			m.Header.Set(header[i], header[i+1])
		}
	}
	return m, nil
}

// publish writes v on subject without waiting; expect, when set, is the
// sequence the subject's last message must have (0: none).
func (j *journal) publish(subject string, v any, expect *uint64, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	m, err := journalMsg(subject, v)
	if err != nil {
		return nil, err
	}
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	return j.js.PublishMsgAsync(m, opts...)
}

// marker replaces every message of subject with an expiring marker
// (expect, when set: compare-and-set on the subject's last message).
func (j *journal) marker(subject string, v any, expect *uint64) (jetstream.PubAckFuture, error) {
	m, err := journalMsg(subject, v, jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if err != nil {
		return nil, err
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgTTL(markerTTL)}
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	return j.js.PublishMsgAsync(m, opts...)
}

// await waits for one write; errJournalConflict when its expectation
// failed.
func await(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		if journalConflict(err) {
			return nil, errJournalConflict
		}
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// write publishes v on subject, rolling up what the subject held, and
// waits for it; it returns the new sequence.
func (j *journal) write(ctx context.Context, subject string, v any, expect *uint64) (uint64, error) {
	m, err := journalMsg(subject, v, jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if err != nil {
		return 0, err
	}
	var opts []jetstream.PublishOpt
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	f, err := j.js.PublishMsgAsync(m, opts...)
	if err != nil {
		return 0, err
	}
	ack, err := await(ctx, f)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

var none uint64 // "no message yet" for an expectation

// get reads subject's last message into v; found is false when there is
// none.
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

// entries reads an operation's journal: entry name → message body (the
// first message of each name, as the stream stored them).
func (j *journal) entries(ctx context.Context, op string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := j.scan(ctx, 1, 0, []string{j.journalSubject(op)}, func(m jetstream.Msg, _ uint64) {
		if name := m.Headers().Get(headerJournalEntry); name != "" {
			if _, seen := out[name]; !seen {
				out[name] = m.Data()
			}
		}
	})
	return out, err
}

// opRun is one API request's operation as the journal sees it; handle
// puts it in the request's context, and the chains the handler runs use
// it. It writes nothing until a chain with steps starts.
type opRun struct {
	j                     *journal
	op, endpoint, subject string
	key                   string
	request               []byte
	// replyTo and replyBy: where this request's caller waits, and until
	// when.
	replyTo        string
	replyBy        time.Time
	begun, resumed bool
	beginErr       error
	chains         int
	entry          opEntry
	seq            uint64
	// journal is the resumed run's journal, as read when it was taken over.
	journal map[string][]byte
	// records are the finished chains' records, for the done record.
	records []schemas.ChainRecord
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
// key the idempotency key that leads to it; its caller waits on replyTo
// until replyBy.
func (j *journal) newOpRun(op, endpoint, subject, key string, request []byte, replyTo string, replyBy time.Time) *opRun {
	if j == nil {
		return nil
	}
	return &opRun{j: j, op: op, endpoint: endpoint, subject: subject, key: key, request: request, replyTo: replyTo, replyBy: replyBy.UTC()}
}

// journalled reports whether the operation has a run entry (its reply
// must then be kept, so a resubmission finds it).
func (r *opRun) journalled() bool { return r != nil && r.begun && r.beginErr == nil }

// begin writes the operation's run entry, or takes over the one an
// earlier run left: one still running is resumed (same attempt, so the
// same chain ids and step keys); one that answered starts a new attempt.
func (r *opRun) begin(ctx context.Context) error {
	if r.begun {
		return r.beginErr
	}
	r.begun = true
	// Before the entry exists: the resumer never takes an operation this
	// broker runs.
	r.j.markRunning(r.op)
	r.beginErr = r.doBegin(ctx)
	if r.beginErr != nil {
		r.j.unmarkRunning(r.op)
	}
	return r.beginErr
}

func (r *opRun) doBegin(ctx context.Context) error {
	j := r.j
	now := time.Now().UTC()
	fresh := opEntry{Op: r.op, Endpoint: r.endpoint, Subject: r.subject, Key: r.key, Request: json.RawMessage(r.request),
		Token: attemptToken(now), Owner: j.owner, State: schemas.OperationRunning, StartedAt: now, UpdatedAt: now,
		ReplyTo: r.replyTo, ReplyBy: r.replyBy}
	for attempt := 0; ; attempt++ {
		if attempt >= 10 {
			return journalError("start the operation", errors.New("its run entry keeps changing"))
		}
		seq, err := j.write(ctx, j.runSubject(r.op), fresh, &none)
		if err == nil {
			r.entry, r.seq = fresh, seq
			return nil
		}
		if !errors.Is(err, errJournalConflict) {
			return journalError("start the operation", err)
		}
		var cur opEntry
		seq, found, err := j.get(ctx, j.runSubject(r.op), &cur)
		if err != nil {
			return journalError("read the operation", err)
		}
		if !found {
			continue // gone meanwhile (expired): create it
		}
		next := fresh
		if cur.State == schemas.OperationRunning {
			// An interrupted run (or one another broker runs now): go on
			// with it.
			next = cur
			if cur.Owner != j.owner {
				next.Resumes++
			}
			next.Owner, next.UpdatedAt = j.owner, now
			if cur.ReplyTo == "" || now.After(cur.ReplyBy) {
				// The first caller gave up: the one waiting now is this
				// request's.
				next.ReplyTo, next.ReplyBy = r.replyTo, r.replyBy
			}
		} else {
			// It answered: this is a new attempt.
			next.Attempt = cur.Attempt + 1
		}
		newSeq, err := j.write(ctx, j.runSubject(r.op), next, &seq)
		if errors.Is(err, errJournalConflict) {
			continue
		}
		if err != nil {
			return journalError("take over the operation", err)
		}
		r.entry, r.seq = next, newSeq
		if next.State == schemas.OperationRunning && cur.State == schemas.OperationRunning {
			r.resumed = true
			if r.journal, err = j.entries(ctx, r.op); err != nil {
				return journalError("read the operation's journal", err)
			}
			j.b.log.Info().Str("op", r.op).Str("endpoint", r.endpoint).Int("attempt", next.Attempt).Int("resumes", next.Resumes).
				Int("entries", len(r.journal)).Msg("resuming an operation from the chain journal")
		}
		return nil
	}
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

// finish records the operation's answer (call it once the reply is kept)
// and clears its run entry and journal. An operation cut short by the
// broker's stop is left running, for the next broker to resume.
func (r *opRun) finish(ctx context.Context, msg *nats.Msg) {
	if !r.journalled() {
		return
	}
	j := r.j
	defer j.unmarkRunning(r.op)
	code := msg.Header.Get(schemas.HeaderErrorCode)
	if transientCode(code) && j.isStopping() {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishBound)
	defer cancel()
	if err := j.done(wctx, r.entry, r.seq, msg, r.records); err != nil {
		j.b.log.Warn().Err(err).Str("op", r.op).Msg("cannot record an operation's answer in the chain journal; the resumer answers it again from the requests bucket")
	}
}

// answerWaiting sends the final answer of a resumed operation to the
// request that waits for it, when that is not the request answered
// (replied): the caller whose broker died mid-chain gets the answer on
// its reply subject while its deadline lasts, without retrying. An answer
// that says to retry is not final (the operation runs again), so it is
// not sent there.
func (r *opRun) answerWaiting(msg *nats.Msg, replied string) {
	if r == nil || !r.resumed || !r.journalled() {
		return
	}
	to := r.entry.ReplyTo
	if to == "" || to == replied || time.Now().After(r.entry.ReplyBy) || transientCode(msg.Header.Get(schemas.HeaderErrorCode)) {
		return
	}
	if err := r.j.b.nc.PublishMsg(&nats.Msg{Subject: to, Header: msg.Header, Data: msg.Data}); err != nil {
		r.j.b.log.Debug().Err(err).Str("op", r.op).Msg("cannot send a resumed operation's answer to the caller that waited for it")
	}
}

// done journals an attempt's answer and replaces the operation's run
// entry with an expiring marker (compare-and-set on seq: a conflict means
// another broker took the operation over, and that one records the
// answer).
func (j *journal) done(ctx context.Context, e opEntry, seq uint64, msg *nats.Msg, records []schemas.ChainRecord) error {
	d := opDone{opEntry: e, Chains: records}
	d.State, d.UpdatedAt, d.Request = schemas.OperationDone, time.Now().UTC(), nil
	d.ReplyTo, d.ReplyBy = "", time.Time{}
	if code := msg.Header.Get(schemas.HeaderErrorCode); code == "" {
		if json.Valid(msg.Data) {
			d.Result = json.RawMessage(msg.Data)
		}
	} else {
		d.Error = &schemas.Error{}
		if json.Unmarshal(msg.Data, d.Error) != nil || d.Error.Code == "" {
			d.Error = &schemas.Error{Code: code, Message: msg.Header.Get(schemas.HeaderError)}
		}
	}
	f1, err := j.appendEntry(e.Op, doneEntry(e.Token), d)
	if err != nil {
		return err
	}
	f2, err := j.marker(j.runSubject(e.Op), opEntry{State: schemas.OperationDone, Attempt: e.Attempt, UpdatedAt: d.UpdatedAt}, &seq)
	if err != nil {
		return err
	}
	if _, err := await(ctx, f1); err != nil {
		return err
	}
	if _, err := await(ctx, f2); err != nil && !errors.Is(err, errJournalConflict) {
		return err
	}
	return nil
}

// appendEntry publishes one entry of op's journal without waiting; its
// name is its message id, so a second write of it is dropped.
func (j *journal) appendEntry(op, entry string, v any) (jetstream.PubAckFuture, error) {
	m, err := journalMsg(j.journalSubject(op), v, headerJournalEntry, entry)
	if err != nil {
		return nil, err
	}
	return j.js.PublishMsgAsync(m, jetstream.WithMsgID(op+"/"+entry))
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
	c := &chainRun{r: r, id: chainID(r.op, r.entry.Token, n), live: true}
	raw, found := r.journal[c.id+".h"]
	if !found {
		if !hasSteps {
			return nil, nil
		}
		return c, nil
	}
	var h chainHead
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, journalError("read chain "+c.id, err)
	}
	if h.Hook != hook {
		return nil, schemas.Errorf(schemas.CodeInternal, "", "chain %s of operation %s was a %s chain, and is resumed as %s: the broker's handler changed under the journal", c.id, r.op, h.Hook, hook)
	}
	if raw, ok := r.journal[c.id+".p"]; ok {
		if err := json.Unmarshal(raw, &c.input); err != nil {
			return nil, journalError("read chain "+c.id, err)
		}
	} else {
		return nil, journalError("read chain "+c.id, errors.New("its head has no input"))
	}
	c.head, c.live = &h, false
	return c, nil
}

// resumed reports whether the chain continues a journalled run.
func (c *chainRun) resumed() bool { return c != nil && c.head != nil }

// chainID returns the chain's id, "" without a journal.
func (c *chainRun) chainID() string {
	if c == nil {
		return ""
	}
	return c.id
}

// append publishes one journal entry of the chain without waiting.
func (c *chainRun) append(entry string, v any) (jetstream.PubAckFuture, error) {
	return c.r.j.appendEntry(c.r.op, entry, v)
}

// start journals a fresh chain's head and input, without waiting (the
// first step's result waits for them).
func (c *chainRun) start(hook, object string, steps []schemas.HookStep, payload json.RawMessage, env map[string]string, at time.Time) error {
	if c == nil || c.head != nil {
		return nil
	}
	f1, err := c.append(c.id+".h", chainHead{ID: c.id, Op: c.r.op, Endpoint: c.r.endpoint, Hook: hook, Object: object,
		StartedAt: at.UTC(), Steps: steps})
	if err != nil {
		return journalError("start chain "+c.id, err)
	}
	f2, err := c.append(c.id+".p", chainInput{Payload: payload, Env: env})
	if err != nil {
		return journalError("start chain "+c.id, err)
	}
	c.pending = append(c.pending, f1, f2)
	return nil
}

// recorded returns step i's journalled result, when the chain resumes and
// the journal has it.
func (c *chainRun) recorded(i int) (stepEntry, bool, error) {
	var e stepEntry
	if c == nil || c.live {
		return e, false, nil
	}
	raw, found := c.r.journal[c.id+"."+strconv.Itoa(i)]
	if !found {
		// The first step without a result: from here on the chain runs.
		c.live = true
		return e, false, nil
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, false, journalError(fmt.Sprintf("read step %d of chain %s", i, c.id), err)
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
	e.At = time.Now().UTC()
	name := c.id + "." + strconv.Itoa(i)
	f, err := c.append(name, e)
	if err != nil {
		return e, journalError(fmt.Sprintf("record step %d of chain %s", i, c.id), err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishBound)
	defer cancel()
	for _, p := range c.pending {
		if _, err := await(wctx, p); err != nil {
			return e, journalError("start chain "+c.id, err)
		}
	}
	c.pending = nil
	ack, err := await(wctx, f)
	if err != nil {
		return e, journalError(fmt.Sprintf("record step %d of chain %s", i, c.id), err)
	}
	if ack.Duplicate {
		// Another run recorded the step first: use its result.
		all, err := c.r.j.entries(wctx, c.r.op)
		if err != nil {
			return e, journalError(fmt.Sprintf("read step %d of chain %s", i, c.id), err)
		}
		var first stepEntry
		if raw, ok := all[name]; ok && json.Unmarshal(raw, &first) == nil {
			first.replayed = true
			return first, nil
		}
	}
	return e, nil
}

// end keeps the chain's record for the operation's done record.
func (c *chainRun) end(rec schemas.ChainRecord) {
	if c == nil {
		return
	}
	c.r.records = append(c.r.records, rec)
}

// scan calls fn with every journal message in [from, stop) (stop 0: to
// the end) on one of the subject filters, in order.
func (j *journal) scan(ctx context.Context, from, stop uint64, filters []string, fn func(m jetstream.Msg, seq uint64)) error {
	c, err := j.js.OrderedConsumer(ctx, schemas.StreamChains, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(from, 1),
	})
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	left := int(info.NumPending)
	for left > 0 {
		batch, err := c.Fetch(min(left, 512), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if stop != 0 && md.Sequence.Stream >= stop {
				return nil
			}
			fn(m, md.Sequence.Stream)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if got == 0 {
			return fmt.Errorf("read %s: %d messages announced, none came", schemas.StreamChains, left)
		}
		left -= got
	}
	return nil
}
