package busctl

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// actionPoll is how often busctl reads a running action's record.
const actionPoll = 250 * time.Millisecond

// actionBarWidth is the width of an action's progress bar, in cells.
const actionBarWidth = 30

// actionStatuses are the values actions ls --status accepts, as the broker
// does (active: pending or running).
var actionStatuses = []string{schemas.ActionStatusActive, schemas.ActionPending, schemas.ActionRunning,
	schemas.ActionSucceeded, schemas.ActionFailed, schemas.ActionCancelled}

// maxActionList is the most actions ls lists, as the broker allows.
const maxActionList = 1000

func (a *app) actionsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "actions",
		Aliases: []string{"action"},
		Short:   "Follow, list and cancel actions (long-running ones included)",
		Long: `Every machine action is recorded by the broker from the moment it is routed
to its end: its status (pending, running, succeeded, failed, cancelled), the
plugin's last progress report, and its result or error. busctl machine action
waits for an action; these commands follow one by its id, list them and
cancel one. A finished action is kept for the broker's --action-retention
(7 days by default).`,
	})
	cmd.AddCommand(a.actionsGetCommand(), a.actionsWatchCommand(), a.actionsListCommand(), a.actionsCancelCommand())
	return cmd
}

func (a *app) actionsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show an action: status, progress, result or error",
		Long: `Show the action ID as the broker records it: machine, command, plugin,
status, the plugin's last progress report, timeout and deadline, and its
result or error once it ended.

-o json prints the ActionRecord.`,
		Args: exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = actionHint
			rec, err := c.GetAction(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printAction(rec)
		}),
	}
}

func (a *app) actionsWatchCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow an action's progress until it ends",
		Long: `Follow an action until it ends: on a terminal with a progress bar, elsewhere
with one line per progress report busctl sees (it reads the record four times
a second, so reports closer together show as the last of them; none with -o
json or yaml). Then it prints the plugin's result (-o json or yaml: the
action's record) and exits 0, or prints the error and exits 1 when the action
failed or was cancelled. Ctrl-C stops watching, not the action.`,
		Args: exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = actionHint
			// The first read fails as any command does with no broker or
			// no such action; from there a broker restart is waited for.
			if _, err := c.GetAction(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.followAction(cmd.Context(), c, args[0], nil, true)
		}),
	}
}

func (a *app) actionsListCommand() *cobra.Command {
	var (
		status, machine string
		count           int
	)
	cmd := &cobra.Command{
		Use:     "ls [--status S] [--machine M] [-n|--count N]",
		Aliases: []string{"list"},
		Short:   "List actions, newest first",
		Long: `List the actions the broker keeps, newest first: the last 20, or -n of them
(up to 1000); --status keeps those with one status (active: pending or
running), --machine those on one machine.

-o json prints {"actions": [ActionRecord…]}.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if status != "" && !slices.Contains(actionStatuses, status) {
				return usageErrf("invalid --status %q: use one of %s", status, strings.Join(actionStatuses, ", "))
			}
			if count < 1 || count > maxActionList {
				return usageErrf("invalid --count %d: between 1 and %d", count, maxActionList)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			acts, err := c.ListActions(cmd.Context(), schemas.ActionListRequest{Status: status, Machine: machine, Limit: count})
			if err != nil {
				return err
			}
			if acts == nil {
				acts = []schemas.ActionRecord{}
			}
			if a.structured() {
				return a.printValue(schemas.ActionListResponse{Actions: acts})
			}
			w := newTable(a.stdout)
			row(w, "ID", "MACHINE", "COMMAND", "PLUGIN", "STATUS", "PROGRESS", "CREATED")
			for _, r := range acts {
				row(w, r.ID, r.Object, r.Command, r.Plugin, r.Status, progressCell(&r), fmtTime(r.CreatedAt))
			}
			return w.Flush()
		}),
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "only actions with this status: "+strings.Join(actionStatuses, ", ")+" (active: pending or running)")
	f.StringVar(&machine, "machine", "", "only the actions on this machine")
	f.IntVarP(&count, "count", "n", 20, fmt.Sprintf("at most this many, the newest (1 to %d)", maxActionList))
	return cmd
}

func (a *app) actionsCancelCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID [--reason TEXT]",
		Short: "Cancel an action that has not ended",
		Long: `Cancel an action that is pending or running: the broker records it cancelled
(with --reason) and tells the plugin instance running it, whose handler's
context is cancelled; what the plugin reports afterwards is ignored. An
action that has ended cannot be cancelled.

-o json prints {"action": ActionRecord, "notified": BOOL}: notified is false
when no instance of the plugin answered.`,
		Args: exactArgs("ID"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = actionHint
			resp, err := c.CancelAction(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(resp)
			}
			r := resp.Action
			told := "its plugin's handler was cancelled"
			if !resp.Notified {
				told = fmt.Sprintf("no instance of %s answered (stopped?): what it reports later is ignored", r.Plugin)
			}
			_, err = fmt.Fprintf(a.stdout, "cancelled action %s (%s on %s); %s\n", r.ID, r.Command, r.Object, told)
			return err
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept with the action and handed to the plugin")
	return cmd
}

// actionHint explains the actions' own errors.
func actionHint(e *schemas.Error) string {
	id := detailString(e, schemas.DetailName)
	switch {
	case e.Code == schemas.CodeConflict && detailString(e, schemas.DetailKind) == "action":
		return fmt.Sprintf("`busctl actions get %s` shows how it ended", id)
	case e.Code == schemas.CodeNotFound && detailString(e, schemas.DetailKind) == "action":
		return "`busctl actions ls` lists the recent actions; finished ones leave after the broker's --action-retention"
	}
	return runningActionHint(e)
}

// runningActionHint explains an error about an action that goes on (busctl
// stopped waiting for it) or was cancelled.
func runningActionHint(e *schemas.Error) string {
	id := detailString(e, schemas.DetailActionID)
	switch {
	case id == "":
	case e.Code == schemas.CodeTimeout && detailString(e, schemas.DetailStatus) != "":
		return fmt.Sprintf("the action goes on: `busctl actions watch %s` follows it, `busctl actions cancel %s` stops it", id, id)
	case e.Code == schemas.CodeTimeout:
		return fmt.Sprintf("it ran past its timeout (the manifest's actions[].timeout, else the broker's --action-timeout): `busctl actions get %s` shows its last progress", id)
	case e.Code == schemas.CodeCancelled:
		return fmt.Sprintf("`busctl actions get %s` shows its last progress", id)
	}
	return ""
}

// followAction waits until the action id ends, drawing its progress on a
// terminal (and, with lines, printing a line per report elsewhere), then
// prints the outcome: the result, or the error as the command's error. res,
// when set, is the answer of the machines.action call that started it
// (printed with -o json or yaml, with the chains).
func (a *app) followAction(ctx context.Context, c *client.Client, id string, res *schemas.MachineActionResponse, lines bool) error {
	bar := a.lineBar()
	var lastSeq uint64
	rec, err := c.WaitAction(ctx, id, actionPoll, func(r *schemas.ActionRecord) {
		bar.draw(actionLine(r, actionBarWidth))
		if lines && !bar.on() && !a.structured() && r.Progress != nil && r.Progress.Seq != lastSeq {
			lastSeq = r.Progress.Seq
			fmt.Fprintln(a.stdout, progressCell(r))
		}
	})
	if err != nil {
		bar.clear()
		if ctx.Err() != nil {
			fmt.Fprintf(a.stderr, "stopped waiting; the action goes on: `busctl actions watch %s` follows it, `busctl actions cancel %s` stops it\n", id, id)
			return nil
		}
		return err
	}
	bar.finish()
	if rec.Status != schemas.ActionSucceeded {
		if a.structured() && res == nil {
			_ = a.printValue(rec)
		}
		e := schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("the action %s without an error", rec.Status)}
		if rec.Error != nil {
			e = *rec.Error
		}
		if e.Details == nil {
			e.Details = map[string]any{}
		}
		e.Details[schemas.DetailActionID] = rec.ID
		return &e
	}
	if a.structured() {
		if res != nil {
			out := *res
			out.Status, out.Result = rec.Status, rec.Result
			return a.printValue(out)
		}
		return a.printValue(rec)
	}
	if err := printResult(a.stdout, rec.Result); err != nil {
		return err
	}
	if res != nil {
		return printChainLines(a.stdout, res.Chains, hasResult(rec.Result))
	}
	return nil
}

func (a *app) printAction(r *schemas.ActionRecord) error {
	if a.structured() {
		return a.printValue(r)
	}
	w := newTable(a.stdout)
	fmt.Fprintf(w, "ID:\t%s\n", r.ID)
	fmt.Fprintf(w, "MACHINE:\t%s\n", r.Object)
	fmt.Fprintf(w, "COMMAND:\t%s\n", r.Command)
	fmt.Fprintf(w, "PLUGIN:\t%s\n", r.Plugin)
	fmt.Fprintf(w, "STATUS:\t%s\n", r.Status)
	prog := progressCell(r)
	if prog == "" {
		prog = "-"
	}
	fmt.Fprintf(w, "PROGRESS:\t%s\n", prog)
	fmt.Fprintf(w, "TIMEOUT:\t%s (deadline %s)\n", r.Timeout.D(), fmtTime(r.Deadline))
	fmt.Fprintf(w, "CREATED:\t%s\n", fmtTime(r.CreatedAt))
	if r.FinishedAt != nil {
		fmt.Fprintf(w, "FINISHED:\t%s (%s)\n", fmtTime(*r.FinishedAt), time.Duration(r.DurationMs*float64(time.Millisecond)).Round(time.Millisecond))
	}
	if len(r.Params) > 0 {
		fmt.Fprintf(w, "PARAMS:\t%s\n", fmtValue(r.Params))
	}
	if hasResult(r.Result) {
		fmt.Fprintf(w, "RESULT:\t%s\n", compactJSON(r.Result))
	}
	if r.Error != nil {
		fmt.Fprintf(w, "ERROR:\t%s\n", apiErrorText(r.Error))
	}
	return w.Flush()
}

// progressCell shows an action's last progress report: "42% flashing".
func progressCell(r *schemas.ActionRecord) string {
	if r.Progress == nil {
		return ""
	}
	s := strconv.FormatFloat(r.Progress.Percent, 'f', -1, 64) + "%"
	if r.Progress.Message != "" {
		s += " " + truncate(r.Progress.Message, 40)
	}
	return s
}

// actionLine renders "firmware-update m1 [=====>      ]  42% flashing
// bank 1 (running)", in width cells.
func actionLine(r *schemas.ActionRecord, width int) string {
	pct, msg := 0.0, ""
	if r.Progress != nil {
		pct, msg = r.Progress.Percent, r.Progress.Message
	}
	if r.Status == schemas.ActionSucceeded {
		pct = 100
	}
	filled := min(int(pct*float64(width)/100), width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	line := fmt.Sprintf("%s %s [%s] %3.0f%%", r.Command, r.Object, bar, pct)
	if msg != "" {
		line += " " + truncate(msg, 40)
	}
	if !schemas.ActionFinal(r.Status) && r.Status != schemas.ActionRunning {
		line += " (" + r.Status + ")"
	}
	return line
}
