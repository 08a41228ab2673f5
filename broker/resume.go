package broker

// The resumer: operations whose broker stopped before they answered (a
// crash mid-chain) are taken over and completed, whether or not their
// caller is still there to retry. It watches the journal's run index
// (journal.go), and for an operation still "running" whose owner is gone
// it claims the op entry (compare-and-set: one broker wins) and sends the
// operation's request again through the API, with the operation's
// idempotency key. Whichever broker serves that request takes the
// object's turn like any request (sequencer.go), finds the journal, and
// goes on from the last completed step; a caller retrying with its key
// meanwhile waits for the same turn and gets the kept reply.
//
// An owner is a broker's API service instance id: a ping on the
// instance's own subject finds no responders once that broker is gone.
// Every broker runs a resumer; the claim makes one of them resume each
// operation. (Across brokers with leases, docs/scale-out.md, the owner
// becomes the lease and the resumer a duty of the leader; the claim stays
// as it is.)

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

const (
	// resumeInterval is how often the resumer looks at the operations
	// left running.
	resumeInterval = time.Second
	// resumeGrace is how long an operation must have been seen running
	// before the resumer takes it: its caller's retry (or the broker
	// itself, just restarted) normally gets there first, and the plugins
	// of the bus reconnect meanwhile.
	resumeGrace = 2 * time.Second
	// maxResumeBackoff bounds the wait between two resumes of one
	// operation that keeps failing to answer.
	maxResumeBackoff = time.Minute
	// maxResuming bounds the resubmissions in flight.
	maxResuming = 16
)

// resumer is the state of one broker's resumer.
type resumer struct {
	j     *journal
	mu    sync.Mutex
	ops   map[string]*resumeItem
	slots chan struct{}
}

type resumeItem struct {
	seen  time.Time // when the watch saw it running
	next  time.Time // not before
	tries int
	busy  bool
}

// resume runs the resumer until ctx ends.
func (j *journal) resume(ctx context.Context) {
	defer j.stop()
	r := &resumer{j: j, ops: map[string]*resumeItem{}, slots: make(chan struct{}, maxResuming)}
	var wg sync.WaitGroup
	wg.Go(func() { r.watch(ctx) })
	t := time.NewTicker(resumeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			j.stop()
			wg.Wait()
			return
		case <-t.C:
			r.tick(ctx, &wg)
		}
	}
}

// watch follows the run entries ("<prefix>.chains.run.*"): every
// subject's last message at start, then each new one.
func (r *resumer) watch(ctx context.Context) {
	j := r.j
	for ctx.Err() == nil {
		c, err := j.js.OrderedConsumer(ctx, schemas.StreamChains, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{wire.ChainsSubject(j.prefix, "run", "*")},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		})
		if err == nil {
			var it jetstream.MessagesContext
			it, err = c.Messages()
			if err == nil {
				stop := context.AfterFunc(ctx, it.Stop)
				for {
					m, err := it.Next()
					if err != nil {
						break
					}
					r.see(m.Subject(), m.Data())
				}
				stop()
				it.Stop()
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			j.b.log.Debug().Err(err).Msg("watch the chain journal's run index; retrying")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// see takes one run entry (or done marker).
func (r *resumer) see(subject string, data []byte) {
	op := subject[strings.LastIndexByte(subject, '.')+1:]
	if op == "" {
		return
	}
	var m opEntry
	if json.Unmarshal(data, &m) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.State != schemas.OperationRunning {
		if it := r.ops[op]; it != nil && !it.busy {
			delete(r.ops, op)
		}
		return
	}
	if r.ops[op] == nil {
		r.ops[op] = &resumeItem{seen: time.Now()}
	}
}

// tick starts the resumes that are due.
func (r *resumer) tick(ctx context.Context, wg *sync.WaitGroup) {
	now := time.Now()
	var due []string
	r.mu.Lock()
	for op, it := range r.ops {
		if it.busy || now.Sub(it.seen) < resumeGrace || now.Before(it.next) || r.j.runsHere(op) {
			continue
		}
		due = append(due, op)
	}
	r.mu.Unlock()
	for _, op := range due {
		select {
		case r.slots <- struct{}{}:
		default:
			return // the others next time
		}
		r.mu.Lock()
		it := r.ops[op]
		if it == nil || it.busy {
			r.mu.Unlock()
			<-r.slots
			continue
		}
		it.busy = true
		r.mu.Unlock()
		wg.Go(func() {
			defer func() { <-r.slots }()
			done, retry := r.resumeOp(ctx, op)
			r.mu.Lock()
			if done {
				delete(r.ops, op)
			} else if it := r.ops[op]; it != nil {
				it.busy = false
				if retry {
					it.tries++
					it.next = time.Now().Add(min(time.Duration(1<<min(it.tries, 6))*resumeInterval, maxResumeBackoff))
				}
			}
			r.mu.Unlock()
		})
	}
}

// resumeOp takes over one operation if its owner is gone and sends it
// again. done: nothing more to do for it; retry: look again later.
func (r *resumer) resumeOp(ctx context.Context, op string) (done, retry bool) {
	j := r.j
	log := j.b.log.With().Str("op", op).Logger()
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var e opEntry
	seq, found, err := j.get(gctx, j.runSubject(op), &e)
	if err != nil {
		return false, true
	}
	if !found || e.State != schemas.OperationRunning {
		return true, false
	}
	if e.Owner != j.owner {
		alive, err := j.alive(gctx, e.Owner)
		if err != nil || alive {
			// Its broker runs it (or cannot be asked now).
			return false, true
		}
	} else if j.runsHere(op) {
		return false, true
	}
	claim := e
	claim.Owner, claim.UpdatedAt = j.owner, time.Now().UTC()
	if e.Owner != j.owner {
		claim.Resumes++
	}
	if _, err := j.write(gctx, j.runSubject(op), claim, &seq); err != nil {
		// Someone else claimed it (or changed it) first.
		return false, true
	}
	log.Info().Str("endpoint", e.Endpoint).Str("previous_owner", e.Owner).Int("attempt", e.Attempt).
		Msg("resuming an operation its broker left unanswered")
	rctx, rcancel := context.WithTimeout(ctx, j.b.cfg.RequestTimeout)
	defer rcancel()
	msg := &nats.Msg{Subject: e.Subject, Data: e.Request, Header: nats.Header{wire.HeaderIdempotencyKey: []string{e.Key}}}
	wire.SetTimeout(msg, rctx)
	reply, err := j.b.nc.RequestMsgWithContext(rctx, msg)
	if err != nil {
		log.Warn().Err(err).Msg("resumed operation not answered yet; trying again later")
		return false, true
	}
	code := reply.Header.Get(schemas.HeaderErrorCode)
	if transientCode(code) {
		log.Warn().Str("code", code).Str("error", reply.Header.Get(schemas.HeaderError)).Msg("resumed operation answered with an error that says to retry")
		// Its handler marked it done (the next attempt starts afresh),
		// unless the broker was stopping.
		return false, true
	}
	// Answered. The handler recorded the answer, unless the answer came
	// from the requests bucket (the operation had answered before its
	// broker could record it): record it here.
	var cur opEntry
	cseq, found, err := j.get(gctx, j.runSubject(op), &cur)
	if err == nil && found && cur.State == schemas.OperationRunning && cur.Owner == j.owner && !j.runsHere(op) {
		var records []schemas.ChainRecord
		if entries, err := j.entries(gctx, op); err == nil {
			records = j.b.rebuildChains(entries, cur.Token)
		}
		if err := j.done(gctx, cur, cseq, reply, records); err != nil {
			log.Warn().Err(err).Msg("cannot record a resumed operation's answer; trying again later")
			return false, true
		}
	}
	log.Info().Str("code", code).Msg("resumed operation answered")
	return true, false
}

// alive reports whether the broker with this owner id still runs: its
// API service answers a ping on its instance subject.
func (j *journal) alive(ctx context.Context, owner string) (bool, error) {
	if owner == "" {
		return false, nil
	}
	if owner == j.owner {
		return true, nil
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := j.b.nc.RequestWithContext(pctx, wire.PingInstanceSubject(wire.BrokerService, owner), nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}
