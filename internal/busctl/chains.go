package busctl

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

func (a *app) chainsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "chains",
		Aliases: []string{"chain"},
		Short:   "Show hook chain runs from the broker's chain journal",
	})
	cmd.AddCommand(a.chainsGetCommand(), a.chainsListCommand())
	return cmd
}

func (a *app) chainsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one chain run, step by step, and the answer of the operation that ran it",
		Long: `Show one hook chain run from the broker's chain journal: its steps (those
journalled so far while it runs; "replayed" marks a step whose answer came from
the journal after a broker crash, its plugin not called again) and the API
operation that ran it, with that operation's answer once it has one. A caller
that gave up waiting on an operation (a deploy, an alert) reads its answer
so: ID is any of its chains' ids (chain_id in a chain record, in the step
requests plugins get, and in io.plugbus.hook.v1.chain_completed events).

The journal keeps chains for the broker's --chain-retention (1h by default).
-o json prints the ChainStatus {"chain": ChainRecord, "operation": {…}}, the
operation's answer included ("result", or "error").`,
		Args: exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.ChainGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.structured() {
				if st.Chain.Steps == nil {
					st.Chain.Steps = []schemas.StepRecord{}
				}
				return a.printValue(st)
			}
			return a.printChainStatus(st)
		}),
	}
}

func (a *app) printChainStatus(st *schemas.ChainStatus) error {
	ch, op := st.Chain, st.Operation
	w := newTable(a.stdout)
	row(w, "CHAIN", "HOOK", "OBJECT", "OUTCOME", "STARTED", "DURATION", "RESUMED")
	resumed := "no"
	if ch.Resumed {
		resumed = "yes"
	}
	row(w, ch.ID, ch.Hook, ch.Object, ch.Outcome, fmtTime(ch.StartedAt), fmtMs(ch.DurationMs), resumed)
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	w = newTable(a.stdout)
	// STEP, not "#": a line starting with "# " reads as a shell comment
	// where the table is pasted.
	row(w, "STEP", "PLUGIN", "OUTCOME", "DURATION", "FROM", "DETAIL")
	for i, s := range ch.Steps {
		from := "plugin"
		switch {
		case s.Replayed:
			from = "journal"
		case s.Outcome == schemas.StepNotReached || s.Outcome == schemas.StepSkipped:
			from = "-"
		}
		row(w, fmt.Sprint(i+1), s.Plugin, s.Outcome, stepDuration(s), from, stepDetail(s))
	}
	if ch.Outcome == schemas.ChainRunning {
		row(w, fmt.Sprint(len(ch.Steps)+1), "", "running", "", "", "the next step, or waiting to be resumed")
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	answer := "-"
	switch {
	case op.Error != nil:
		answer = errText(op.Error)
	case len(op.Result) > 0:
		answer = "ok"
		var r struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(op.Result, &r) == nil && r.EventID != "" {
			answer = "ok, event " + r.EventID
		}
	}
	w = newTable(a.stdout)
	row(w, "OPERATION", "ENDPOINT", "STATE", "ATTEMPT", "RESUMES", "UPDATED", "ANSWER")
	row(w, op.ID, op.Endpoint, op.State, fmt.Sprint(op.Attempt), fmt.Sprint(op.Resumes), fmtTime(op.UpdatedAt), answer)
	return w.Flush()
}

func (a *app) chainsListCommand() *cobra.Command {
	var req schemas.ChainListRequest
	cmd := &cobra.Command{
		Use:     "ls [--object OBJECT] [--hook HOOK] [--limit N]",
		Aliases: []string{"list"},
		Short:   "List the newest chain runs of the chain journal",
		Long: `List the newest hook chain runs of the broker's chain journal, newest first:
each chain's id (for busctl chains get), hook point, object, the operation that
ran it, its number of steps and its outcome ("running" while it is not
finished, or waits to be resumed after its broker stopped). --object narrows to
one object (job/NAME, machine/NAME, alert/ID), --hook to one hook point.

-o json prints {"chains": [ChainSummary…], "truncated": true} (truncated only
when more chains match than --limit).`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if req.Hook != "" && !slices.Contains(schemas.HookPoints, req.Hook) {
				return usageErrf("unknown hook point %q: use one of %s", req.Hook, strings.Join(schemas.HookPoints, ", "))
			}
			if req.Limit < 1 || req.Limit > schemas.MaxChainListLimit {
				return usageErrf("invalid --limit %d: between 1 and %d", req.Limit, schemas.MaxChainListLimit)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.ChainList(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.structured() {
				if res.Chains == nil {
					res.Chains = []schemas.ChainSummary{}
				}
				return a.printValue(res)
			}
			w := newTable(a.stdout)
			row(w, "CHAIN", "HOOK", "OBJECT", "ENDPOINT", "STEPS", "OUTCOME", "STARTED", "RESUMED")
			for _, s := range res.Chains {
				resumed := "no"
				if s.Resumed {
					resumed = "yes"
				}
				row(w, s.ID, s.Hook, s.Object, s.Endpoint, fmt.Sprint(s.Steps), s.Outcome, fmtTime(s.StartedAt), resumed)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if res.Truncated {
				fmt.Fprintf(a.stdout, "(more chains match: raise --limit, or narrow with --object or --hook)\n")
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Object, "object", "", "only chains about this object (job/NAME, machine/NAME, alert/ID)")
	f.StringVar(&req.Hook, "hook", "", "only chains of this hook point")
	f.IntVar(&req.Limit, "limit", schemas.DefaultChainListLimit, "at most this many chains")
	return cmd
}
