package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// handleChainsGet answers chains.get: a chain run from the journal, with
// the operation it belongs to and that operation's answer once it has one
// (how a caller that went away learns what became of its request).
func (b *Broker) handleChainsGet(ctx context.Context, req *schemas.ChainGetRequest) (any, error) {
	op, _, _, ok := parseChainID(req.ID)
	if !ok {
		return nil, schemas.Errorf(schemas.CodeInvalidField, "id", "%q is not a chain id (OPERATION-ATTEMPT-N, as chain_id in a chain record)", req.ID)
	}
	j := b.journal
	var h chainHead
	_, found, err := j.get(ctx, j.chainSubject(req.ID, "h"), &h)
	if err != nil {
		return nil, journalReadError(err)
	}
	if !found {
		e := schemas.Errorf(schemas.CodeNotFound, "id", "chain %s is not in the chain journal: no such chain, or older than the chain retention (%s)", req.ID, b.cfg.ChainRetention)
		e.Details = map[string]any{schemas.DetailKind: "chain", schemas.DetailName: req.ID}
		return nil, e
	}
	out := schemas.ChainStatus{Operation: schemas.ChainOperation{ID: op, Endpoint: h.Endpoint, State: schemas.OperationRunning,
		StartedAt: h.StartedAt, UpdatedAt: h.StartedAt}}
	var e opEntry
	if _, found, err := j.get(ctx, j.opSubject(op), &e); err != nil {
		return nil, journalReadError(err)
	} else if found {
		out.Operation = schemas.ChainOperation{ID: op, Endpoint: e.Endpoint, State: e.State, Attempt: e.Attempt,
			StartedAt: e.StartedAt, UpdatedAt: e.UpdatedAt, Resumes: e.Resumes, Result: e.Result, Error: e.Error}
	}
	var rec schemas.ChainRecord
	if _, found, err := j.get(ctx, j.chainSubject(req.ID, "e"), &rec); err != nil {
		return nil, journalReadError(err)
	} else if found {
		out.Chain = rec
		return out, nil
	}
	if out.Chain, err = b.rebuildChain(ctx, h); err != nil {
		return nil, journalReadError(err)
	}
	return out, nil
}

func journalReadError(err error) error {
	if e := (*schemas.Error)(nil); errors.As(err, &e) {
		return e
	}
	return schemas.Errorf(schemas.CodeUnavailable, "", "cannot read the chain journal (stream %s): %v; retry (is JetStream available?)", schemas.StreamChains, err)
}

// rebuildChain folds a chain's journalled steps into its record, as the
// run would have (chainState): the steps so far, and the outcome once
// every step is there (ChainRunning before).
func (b *Broker) rebuildChain(ctx context.Context, h chainHead) (schemas.ChainRecord, error) {
	j := b.journal
	var in chainInput
	if _, _, err := j.get(ctx, j.chainSubject(h.ID, "p"), &in); err != nil {
		return schemas.ChainRecord{}, err
	}
	cs := b.newChainState(h.Hook, h.Object, h.ID, in.Payload, in.Env, h.StartedAt, len(h.Steps))
	last := h.StartedAt
	for i, step := range h.Steps {
		if cs.stopped {
			cs.notReached(step)
			continue
		}
		var e stepEntry
		_, found, err := j.get(ctx, j.chainSubject(h.ID, strconv.Itoa(i)), &e)
		if err != nil {
			return schemas.ChainRecord{}, err
		}
		if !found {
			rec := cs.res.record
			rec.Outcome = schemas.ChainRunning
			rec.DurationMs = ms(time.Since(h.StartedAt))
			return rec, nil
		}
		cs.apply(step, e)
		if e.At.After(last) {
			last = e.At
		}
	}
	res := cs.finish()
	res.record.DurationMs = ms(last.Sub(h.StartedAt))
	return res.record, nil
}

// chainScanWindow is how many journal messages chains.list reads at a
// time, going back from the newest.
const chainScanWindow = 4096

// handleChainsList answers chains.list: the newest chain runs of the
// journal (filtered by object and hook), read back from the end of the
// stream one window at a time until the limit is reached.
func (b *Broker) handleChainsList(ctx context.Context, req *schemas.ChainListRequest) (any, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = schemas.DefaultChainListLimit
	}
	limit = min(limit, schemas.MaxChainListLimit)
	j := b.journal
	info, err := j.stream.Info(ctx)
	if err != nil {
		return nil, journalReadError(err)
	}
	type found struct {
		seq uint64
		h   chainHead
	}
	var heads []found
	ends := map[string]schemas.ChainRecord{}
	stop := info.State.LastSeq + 1
	first := max(info.State.FirstSeq, 1)
	window := uint64(max(chainScanWindow, limit*32))
	for stop > first && len(heads) <= limit && info.State.Msgs > 0 {
		from := first
		if stop > first+window {
			from = stop - window
		}
		var batch []found
		err := j.scan(ctx, from, stop, []string{wire.ChainsSubject(j.prefix, "*", "*", "h"), wire.ChainsSubject(j.prefix, "*", "*", "e")},
			func(subject string, seq uint64, data []byte) {
				if subject[len(subject)-1] == 'e' {
					var rec schemas.ChainRecord
					if json.Unmarshal(data, &rec) == nil {
						ends[rec.ID] = rec
					}
					return
				}
				var h chainHead
				if json.Unmarshal(data, &h) != nil {
					return
				}
				if (req.Object == "" || h.Object == req.Object) && (req.Hook == "" || h.Hook == req.Hook) {
					batch = append(batch, found{seq, h})
				}
			})
		if err != nil {
			return nil, journalReadError(err)
		}
		slices.Reverse(batch)
		heads = append(heads, batch...)
		stop = from
	}
	out := schemas.ChainListResponse{Chains: []schemas.ChainSummary{}}
	for i, f := range heads {
		if i == limit {
			out.Truncated = true
			break
		}
		s := schemas.ChainSummary{ID: f.h.ID, Hook: f.h.Hook, Object: f.h.Object, Operation: f.h.Op, Endpoint: f.h.Endpoint,
			StartedAt: f.h.StartedAt, Steps: len(f.h.Steps), Outcome: schemas.ChainRunning}
		if rec, ok := ends[f.h.ID]; ok {
			s.Outcome, s.Resumed = rec.Outcome, rec.Resumed
		}
		out.Chains = append(out.Chains, s)
	}
	return out, nil
}

// scan calls fn with every journal message in [from, stop) on one of the
// subject filters, in order.
func (j *journal) scan(ctx context.Context, from, stop uint64, filters []string, fn func(subject string, seq uint64, data []byte)) error {
	c, err := j.js.OrderedConsumer(ctx, schemas.StreamChains, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
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
			if md.Sequence.Stream >= stop {
				return nil
			}
			fn(m.Subject(), md.Sequence.Stream, m.Data())
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
