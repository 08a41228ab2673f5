package broker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// handleChainsGet answers chains.get: a chain run from the journal, with
// the operation it belongs to and that operation's answer once it has one
// (how a caller that went away learns what became of its request).
func (b *Broker) handleChainsGet(ctx context.Context, req *schemas.ChainGetRequest) (any, error) {
	op, token, _, ok := parseChainID(req.ID)
	if !ok {
		return nil, schemas.Errorf(schemas.CodeInvalidField, "id", "%q is not a chain id (OPERATION-ATTEMPT-N, as chain_id in a chain record)", req.ID)
	}
	j := b.journal
	entries, err := j.entries(ctx, op)
	if err != nil {
		return nil, journalReadError(err)
	}
	var h chainHead
	if raw, ok := entries[req.ID+".h"]; !ok || json.Unmarshal(raw, &h) != nil {
		ne := schemas.Errorf(schemas.CodeNotFound, "id", "chain %s is not in the chain journal: no such chain, or older than the chain retention (%s)", req.ID, b.cfg.ChainRetention)
		ne.Details = map[string]any{schemas.DetailKind: "chain", schemas.DetailName: req.ID}
		return nil, ne
	}
	// Finished: the attempt's answer has the chain's record.
	var d opDone
	if raw, ok := entries[doneEntry(token)]; ok && json.Unmarshal(raw, &d) == nil {
		for _, c := range d.Chains {
			if c.ID == req.ID {
				return schemas.ChainStatus{Chain: c, Operation: d.operation()}, nil
			}
		}
	} else {
		// Running (or interrupted, waiting to be resumed).
		d = opDone{opEntry: opEntry{Op: op, Endpoint: h.Endpoint, State: schemas.OperationRunning, StartedAt: h.StartedAt, UpdatedAt: h.StartedAt}}
		var e opEntry
		if _, ok, err := j.get(ctx, j.runSubject(op), &e); err != nil {
			return nil, journalReadError(err)
		} else if ok && e.State == schemas.OperationRunning && e.Token == token {
			d.opEntry = e
		}
	}
	rec, err := b.rebuildChain(h, entries)
	if err != nil {
		return nil, journalReadError(err)
	}
	return schemas.ChainStatus{Chain: rec, Operation: d.operation()}, nil
}

// operation is the API view of an operation's record.
func (d *opDone) operation() schemas.ChainOperation {
	return schemas.ChainOperation{ID: d.Op, Endpoint: d.Endpoint, State: d.State, Attempt: d.Attempt,
		StartedAt: d.StartedAt, UpdatedAt: d.UpdatedAt, Resumes: d.Resumes, Result: d.Result, Error: d.Error}
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
func (b *Broker) rebuildChain(h chainHead, entries map[string][]byte) (schemas.ChainRecord, error) {
	var in chainInput
	if raw, ok := entries[h.ID+".p"]; ok {
		if err := json.Unmarshal(raw, &in); err != nil {
			return schemas.ChainRecord{}, err
		}
	}
	cs := b.newChainState(h.Hook, h.Object, h.ID, in.Payload, in.Env, h.StartedAt, len(h.Steps))
	last := h.StartedAt
	for i, step := range h.Steps {
		if cs.stopped {
			cs.notReached(step)
			continue
		}
		raw, ok := entries[h.ID+"."+strconv.Itoa(i)]
		if !ok {
			rec := cs.res.record
			rec.Outcome = schemas.ChainRunning
			rec.DurationMs = ms(time.Since(h.StartedAt))
			return rec, nil
		}
		var e stepEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return schemas.ChainRecord{}, err
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

// rebuildChains rebuilds the record of every chain of one attempt (token)
// in an operation's journal, in chain order.
func (b *Broker) rebuildChains(entries map[string][]byte, token string) []schemas.ChainRecord {
	var heads []chainHead
	for name, raw := range entries {
		var h chainHead
		if _, t, _, ok := parseChainID(strings.TrimSuffix(name, ".h")); ok && t == token && strings.HasSuffix(name, ".h") && json.Unmarshal(raw, &h) == nil {
			heads = append(heads, h)
		}
	}
	slices.SortFunc(heads, func(x, y chainHead) int { return x.StartedAt.Compare(y.StartedAt) })
	var out []schemas.ChainRecord
	for _, h := range heads {
		if rec, err := b.rebuildChain(h, entries); err == nil {
			out = append(out, rec)
		}
	}
	return out
}

// chainScanWindow is how many journal messages chains.list reads at a
// time, going back from the newest.
const chainScanWindow = 4096

// handleChainsList answers chains.list: the newest chain runs of the
// journal (filtered by object and hook), from their heads and their
// attempts' answers, read back from the end of the stream one window at a
// time until the limit is reached.
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
	match := func(object, hook string) bool {
		return (req.Object == "" || object == req.Object) && (req.Hook == "" || hook == req.Hook)
	}
	seen := map[string]schemas.ChainSummary{}
	stop := info.State.LastSeq + 1
	first := max(info.State.FirstSeq, 1)
	window := uint64(max(chainScanWindow, limit*32))
	filter := wire.ChainsSubject(j.prefix, "j", "*")
	for stop > first && len(seen) <= limit && info.State.Msgs > 0 {
		from := first
		if stop > first+window {
			from = stop - window
		}
		err := j.scan(ctx, from, stop, []string{filter}, func(m jetstream.Msg, _ uint64) {
			entry := m.Headers().Get(headerJournalEntry)
			switch {
			case strings.HasPrefix(entry, "done."):
				var d opDone
				if json.Unmarshal(m.Data(), &d) != nil {
					return
				}
				for _, c := range d.Chains {
					if match(c.Object, c.Hook) {
						seen[c.ID] = schemas.ChainSummary{ID: c.ID, Hook: c.Hook, Object: c.Object, Operation: d.Op, Endpoint: d.Endpoint,
							StartedAt: c.StartedAt, Steps: len(c.Steps), Outcome: c.Outcome, Resumed: c.Resumed}
					}
				}
			case strings.HasSuffix(entry, ".h"):
				var h chainHead
				if json.Unmarshal(m.Data(), &h) != nil || !match(h.Object, h.Hook) {
					return
				}
				if _, known := seen[h.ID]; !known {
					seen[h.ID] = schemas.ChainSummary{ID: h.ID, Hook: h.Hook, Object: h.Object, Operation: h.Op, Endpoint: h.Endpoint,
						StartedAt: h.StartedAt, Steps: len(h.Steps), Outcome: schemas.ChainRunning}
				}
			}
		})
		if err != nil {
			return nil, journalReadError(err)
		}
		stop = from
	}
	out := schemas.ChainListResponse{Chains: []schemas.ChainSummary{}}
	for _, s := range seen {
		out.Chains = append(out.Chains, s)
	}
	slices.SortFunc(out.Chains, func(x, y schemas.ChainSummary) int {
		if c := y.StartedAt.Compare(x.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(y.ID, x.ID)
	})
	if len(out.Chains) > limit {
		out.Chains, out.Truncated = out.Chains[:limit], true
	}
	return out, nil
}
