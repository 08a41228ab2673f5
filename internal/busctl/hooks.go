package busctl

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

func (a *app) hooksCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "hooks",
		Aliases: []string{"hook"},
		Short:   "Show the hook chains plugins form",
	})
	cmd.AddCommand(a.hooksListCommand())
	return cmd
}

func (a *app) hooksListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "ls [HOOK]",
		Aliases: []string{"list"},
		Short:   "List the hook chains: per hook point, the steps in the order they run",
		Long: `List the hook chains as the broker will run them: for each hook point, the
plugins that implement it in run order (# 1 runs first), with the step's
priority, timeout, failure policy, whether it may override env keys set by
earlier steps (job.runtime_env) and the plugin's state (a step whose plugin is
not ACTIVE is skipped). HOOK narrows the list to one hook point.

Hook points: ` + strings.Join(schemas.HookPoints, ", ") + `.`,
		ValidArgs: schemas.HookPoints,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrf("%s takes at most 1 argument (HOOK), got %d: %q", cmd.CommandPath(), len(args), args)
			}
			if len(args) == 1 && !slices.Contains(schemas.HookPoints, args[0]) {
				return usageErrf("unknown hook point %q: use one of %s", args[0], strings.Join(schemas.HookPoints, ", "))
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			hook := ""
			if len(args) == 1 {
				hook = args[0]
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.HooksList(cmd.Context(), hook)
			if err != nil {
				return err
			}
			if a.structured() {
				if res.Chains == nil {
					res.Chains = []schemas.HookChain{}
				}
				for i := range res.Chains {
					if res.Chains[i].Steps == nil {
						res.Chains[i].Steps = []schemas.HookStep{}
					}
				}
				return a.printValue(res)
			}
			want := schemas.HookPoints
			if hook != "" {
				want = []string{hook}
			}
			return printHookChains(a.stdout, withEmptyChains(res.Chains, want))
		}),
	}
}

// withEmptyChains returns chains with an empty chain added for every hook
// point of want the broker left out, ordered as schemas.HookPoints (hook
// points busctl does not know go last, as the broker sent them). The steps
// of a chain are never reordered: they are in run order.
func withEmptyChains(chains []schemas.HookChain, want []string) []schemas.HookChain {
	out := slices.Clone(chains)
	for _, h := range want {
		if !slices.ContainsFunc(out, func(c schemas.HookChain) bool { return c.Hook == h }) {
			out = append(out, schemas.HookChain{Hook: h})
		}
	}
	rank := func(h string) int {
		if i := slices.Index(schemas.HookPoints, h); i >= 0 {
			return i
		}
		return len(schemas.HookPoints)
	}
	slices.SortStableFunc(out, func(x, y schemas.HookChain) int { return rank(x.Hook) - rank(y.Hook) })
	return out
}

// printHookChains writes the `hooks ls` table: one row per step, in run
// order, with why it is there (priority, an ordering constraint, the tie
// rule), and a row saying so for a hook point no plugin implements. The
// columns are aligned over the header and the step rows of every chain;
// the "no plugin" note sits past the # column and widens nothing.
func printHookChains(w io.Writer, chains []schemas.HookChain) error {
	const noSteps = "no plugin implements this hook"
	rows := [][]string{{"HOOK", "#", "PLUGIN", "PRIORITY", "TIMEOUT", "POLICY", "INACTIVE", "OVERRIDE", "STATE", "WHY"}}
	for _, c := range chains {
		if len(c.Steps) == 0 {
			rows = append(rows, []string{c.Hook, "-", noSteps})
			continue
		}
		for i, s := range c.Steps {
			timeout := ""
			if s.Timeout > 0 {
				timeout = s.Timeout.D().String()
			}
			override := "no"
			if s.Override {
				override = "yes"
			}
			inactive := s.WhenInactive
			if inactive == "" {
				inactive = schemas.DefaultWhenInactive(s.FailurePolicy)
			}
			rows = append(rows, []string{c.Hook, fmt.Sprint(i + 1), s.Plugin, fmt.Sprint(s.Priority), timeout,
				s.FailurePolicy, inactive, override, string(s.State), cell(s.Reason)})
		}
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		last := len(r) - 1 // the last cell of a row is never padded
		for i, c := range r[:last] {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			c = cell(c)
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell is a table cell as row prints it: "-" when empty, on one line.
func cell(c string) string {
	if c == "" {
		return "-"
	}
	return oneLine(c)
}

// chainLines returns one summary line per step of the chain runs:
//
//	hook job.pre_deploy   job-policy  continued  1.2ms
//	hook job.runtime_env  job-policy  continued  0.8ms  env +LOG_LEVEL,REGION
//	hook job.runtime_env  audit       ignored    5.0s   timeout: …
//
// A chain that failed or was rejected without a step to blame (conflicting
// outputs) gets a line of its own with "-" as plugin. Chains without steps
// give no line.
func chainLines(chains []schemas.ChainRecord) []string {
	var rows [][]string
	for _, c := range chains {
		blamed := false
		for _, s := range c.Steps {
			rows = append(rows, []string{"hook " + c.Hook, s.Plugin, s.Outcome, stepDuration(s), stepDetail(s)})
			if s.Outcome == schemas.StepRejected || s.Outcome == schemas.StepFailed {
				blamed = true
			}
		}
		if c.Error != nil && !blamed {
			rows = append(rows, []string{"hook " + c.Hook, "-", "chain " + c.Outcome, fmtMs(c.DurationMs), errText(c.Error)})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	// Align the columns by hand: the last one is free text.
	widths := make([]int, 4)
	for _, r := range rows {
		for i := range widths {
			widths[i] = max(widths[i], len([]rune(r[i])))
		}
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, wd := range widths {
			b.WriteString(oneLine(r[i]))
			if i < len(widths)-1 || r[4] != "" {
				b.WriteString(strings.Repeat(" ", wd-len([]rune(r[i]))+2))
			}
		}
		b.WriteString(oneLine(r[4]))
		lines = append(lines, b.String())
	}
	return lines
}

// printChainLines writes chainLines(chains) to w, after a blank line when
// sep is set and there is anything to write.
func printChainLines(w io.Writer, chains []schemas.ChainRecord, sep bool) error {
	lines := chainLines(chains)
	if len(lines) == 0 {
		return nil
	}
	if sep {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, strings.Join(lines, "\n"))
	return err
}

// stepDuration shows how long a step took, "-" when it did not run.
func stepDuration(s schemas.StepRecord) string {
	if s.Outcome == schemas.StepNotReached || (s.Outcome == schemas.StepSkipped && s.DurationMs == 0) {
		return "-"
	}
	return fmtMs(s.DurationMs)
}

// fmtMs shows milliseconds as "0.8ms", "1.2ms", "250.0ms" or "5.0s".
func fmtMs(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.1fs", ms/1000)
	}
	return fmt.Sprintf("%.1fms", ms)
}

// stepDetail is the free-text end of a step line: the env keys a
// job.runtime_env step added, a rejection's reason, what went wrong.
func stepDetail(s schemas.StepRecord) string {
	var parts []string
	if len(s.EnvKeys) > 0 {
		parts = append(parts, "env +"+strings.Join(s.EnvKeys, ","))
	}
	if s.Reason != "" {
		parts = append(parts, s.Reason)
	}
	if s.Error != nil {
		parts = append(parts, errText(s.Error))
	}
	return strings.Join(parts, "  ")
}

// errText is "code: message", without the plugin (the line names it).
func errText(e *schemas.Error) string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// oneLine keeps a cell on its line.
func oneLine(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// errorChain returns the chain run an error reply carries in
// details.chain (a rejected or failed operation), or nil.
func errorChain(e *schemas.Error) *schemas.ChainRecord {
	v, ok := e.Details[schemas.DetailChain]
	if !ok || v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var c schemas.ChainRecord
	if err := json.Unmarshal(b, &c); err != nil || c.Hook == "" {
		return nil
	}
	return &c
}

// chainHint says what to do about an operation a hook chain stopped.
func chainHint(e *schemas.Error, c *schemas.ChainRecord) string {
	list := fmt.Sprintf("`busctl hooks ls %s` shows the chain", c.Hook)
	var stopped *schemas.StepRecord
	for i := range c.Steps {
		if o := c.Steps[i].Outcome; o == schemas.StepRejected || o == schemas.StepFailed {
			stopped = &c.Steps[i]
			break
		}
	}
	plugin := e.Plugin
	if plugin == "" && stopped != nil {
		plugin = stopped.Plugin
	}
	switch {
	case c.Outcome == schemas.ChainRejected || (stopped != nil && stopped.Outcome == schemas.StepRejected):
		if plugin == "" {
			return "a " + c.Hook + " hook refused the operation for the reason above: " + list
		}
		return fmt.Sprintf("plugin %s refused it at %s for the reason above: change the request to satisfy it; %s",
			plugin, c.Hook, list)
	case stopped != nil:
		return fmt.Sprintf("plugin %s failed at %s and its failure policy is fail: `busctl plugins get %s` shows its state and last error; %s",
			stopped.Plugin, c.Hook, stopped.Plugin, list)
	}
	return list
}
