package busctl

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// completionCommand sets up cobra's `completion bash|zsh|fish|powershell`
// with busctl's own help text, and makes it a group: an unknown shell is a
// usage error rather than help and exit 0.
func (a *app) completionCommand(root *cobra.Command) {
	root.CompletionOptions.HiddenDefaultCmd = false
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Short = "Print the shell completion script for bash, zsh, fish or powershell"
		c.Long = `Print the script that makes the shell complete busctl's commands, flags and
arguments (plugin, host, machine and alert names, action and chain ids, hook points, -o
formats).

  bash:  source <(busctl completion bash)
         # for every new shell: busctl completion bash > /etc/bash_completion.d/busctl
         # (needs the bash-completion package)
  zsh:   source <(busctl completion zsh)
         # for every new shell: busctl completion zsh > "${fpath[1]}/_busctl"
         # (with "autoload -U compinit; compinit" in ~/.zshrc)
  fish:  busctl completion fish | source
         # for every new shell: busctl completion fish > ~/.config/fish/completions/busctl.fish

Names are completed by asking the broker, with the global flags given so far
(--server, --context, --creds); nothing is completed when it does not answer.`
		group(c)
	}
}

// completeTimeout bounds the broker call a completion makes: the shell
// waits for it.
const completeTimeout = 2 * time.Second

// nameLister lists the names an argument takes, from the broker.
type nameLister func(ctx context.Context, c *client.Client) ([]string, error)

// completeNames completes the first argument with the names list returns.
func (a *app) completeNames(list nameLister) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		// The shell waits: connecting too is bounded.
		a.timeout = min(a.timeout, completeTimeout)
		c, err := a.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		names, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func pluginNames(ctx context.Context, c *client.Client) ([]string, error) {
	ps, err := c.ListPlugins(ctx, "")
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out, err
}

func hostNames(ctx context.Context, c *client.Client) ([]string, error) {
	hs, err := c.ListHosts(ctx, "")
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out, err
}

func machineNames(ctx context.Context, c *client.Client) ([]string, error) {
	ms, err := c.ListMachines(ctx)
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out, err
}

func jobNames(ctx context.Context, c *client.Client) ([]string, error) {
	js, err := c.ListJobs(ctx)
	var out []string
	for _, j := range js {
		if !slices.Contains(out, j.Name) {
			out = append(out, j.Name)
		}
	}
	return out, err
}

func alertIDs(ctx context.Context, c *client.Client) ([]string, error) {
	as, err := c.ListAlerts(ctx, "")
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out, err
}

// completeActions is how many of the newest actions an action id
// completes from.
const completeActions = 100

// actionIDs lists the ids of the newest actions with status (all when
// it is empty).
func actionIDs(status string) nameLister {
	return func(ctx context.Context, c *client.Client) ([]string, error) {
		as, err := c.ListActions(ctx, schemas.ActionListRequest{Status: status, Limit: completeActions})
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out, err
	}
}

func deadLetterSeqs(ctx context.Context, c *client.Client) ([]string, error) {
	page, err := c.ListDeadLetters(ctx, schemas.DLQListRequest{Limit: schemas.MaxDLQPage})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range page.DeadLetters {
		out = append(out, strconv.FormatUint(d.Seq, 10))
	}
	return out, nil
}

func chainIDs(ctx context.Context, c *client.Client) ([]string, error) {
	res, err := c.ChainList(ctx, schemas.ChainListRequest{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range res.Chains {
		out = append(out, ch.ID)
	}
	return out, nil
}

// setCompletions gives the commands that take a name their completion,
// and the flags with fixed values theirs.
func (a *app) setCompletions(root *cobra.Command) {
	byPath := map[string]nameLister{}
	for _, c := range []string{"get", "verify", "config", "rm", "enable", "disable", "restart", "logs", "creds", "revoke"} {
		byPath["busctl plugins "+c] = pluginNames
	}
	for _, c := range []string{"get", "creds", "revoke"} {
		byPath["busctl hosts "+c] = hostNames
	}
	for _, c := range []string{"get", "params", "action", "set-param"} {
		byPath["busctl machine "+c] = machineNames
	}
	for _, c := range []string{"get", "delete"} {
		byPath["busctl job "+c] = jobNames
	}
	for _, c := range []string{"get", "resolve"} {
		byPath["busctl alert "+c] = alertIDs
	}
	byPath["busctl actions get"] = actionIDs("")
	byPath["busctl actions watch"] = actionIDs(schemas.ActionStatusActive)
	byPath["busctl actions cancel"] = actionIDs(schemas.ActionStatusActive)
	byPath["busctl dlq show"] = deadLetterSeqs
	byPath["busctl dlq replay"] = deadLetterSeqs
	byPath["busctl dlq purge"] = deadLetterSeqs
	byPath["busctl chains get"] = chainIDs
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if list, ok := byPath[c.CommandPath()]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = a.completeNames(list)
		}
		if c.CommandPath() == "busctl hooks ls" {
			hooks := fixedCompletions(schemas.HookPoints)
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return hooks(cmd, args, toComplete)
			}
		}
		fixed := map[string][]string{"code": schemas.ReasonCodes, "status": alertStatuses, "severity": severities, "hook": schemas.HookPoints}
		if c.CommandPath() == "busctl actions ls" {
			fixed["status"] = actionStatuses
		}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if vals, ok := fixed[f.Name]; ok {
				_ = c.RegisterFlagCompletionFunc(f.Name, fixedCompletions(vals))
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	_ = root.RegisterFlagCompletionFunc("output", fixedCompletions(outputFormats))
}

// fixedCompletions completes with the values that start with what is
// typed.
func fixedCompletions(vals []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, v := range vals {
			if strings.HasPrefix(v, toComplete) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
