package busctl

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

func (a *app) hostsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "hosts",
		Aliases: []string{"host"},
		Short:   "List the hosts hostd runs plugins on, and their plugin instances",
	})
	cmd.AddCommand(a.hostsListCommand(), a.hostsGetCommand(), a.hostsCredsCommand(), a.hostsRevokeCommand())
	return cmd
}

func (a *app) hostsListCommand() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:     "ls [--state S]",
		Aliases: []string{"list"},
		Short:   "List the hosts whose hostd has reported",
		Long: `List the hosts whose hostd has reported, sorted by name: state (UP while
hostd reports, LOST when its heartbeats stopped, STOPPED when hostd stopped on
purpose), labels, hostd version, how many of the plugin instances it reports
are RUNNING out of all it reports, and its last heartbeat.

-o json prints the HostListResponse {"hosts": [Host…]}, instances included.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = func(e *schemas.Error) string {
				if e.Code == schemas.CodeInvalidField && e.Field == "state" {
					if allowed := detailList(e, schemas.DetailAllowed); allowed != "" {
						return "--state takes one of " + allowed + " (any case)"
					}
				}
				return ""
			}
			hosts, err := c.ListHosts(cmd.Context(), schemas.HostState(strings.ToUpper(state)))
			if err != nil {
				return err
			}
			if hosts == nil {
				hosts = []schemas.Host{}
			}
			if a.structured() {
				return a.printValue(schemas.HostListResponse{Hosts: hosts})
			}
			w := newTable(a.stdout)
			row(w, "HOST", "STATE", "LABELS", "HOSTD", "PLUGINS", "HEARTBEAT")
			for _, h := range hosts {
				row(w, h.Name, string(h.State), fmtStringMap(h.Labels), h.HostdVersion, instanceCount(h.Plugins),
					fmtTime(h.HeartbeatAt))
			}
			return w.Flush()
		}),
	}
	cmd.Flags().StringVar(&state, "state", "", "only hosts in this state (UP, LOST, STOPPED)")
	return cmd
}

func (a *app) hostsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get HOST",
		Short: "Show one host and its plugin instances",
		Long: `Show one host as its hostd reports it, then one row per plugin instance: its
state, process id, restarts, when it started, how its process last ended and
why hostd does not run it (DISABLED, NOT_PLACED, INVALID) or why it failed.
The last lines a failed instance (BACKOFF, FAILED) wrote to stderr follow
the table.

-o json prints the Host.`,
		Args: exactArgs("HOST"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			h, err := c.GetHost(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(h)
			}
			return a.printHost(h)
		}),
	}
}

// printHost shows a host as "KEY: value" lines, a blank line, its
// instances as a table, and the stderr tails hostd keeps.
func (a *app) printHost(h *schemas.Host) error {
	w := newTable(a.stdout)
	kv := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "%s:\t%s\n", k, v)
	}
	kv("NAME", h.Name)
	kv("STATE", string(h.State))
	kv("LABELS", fmtStringMap(h.Labels))
	kv("HOSTD", h.HostdVersion)
	kv("STARTED", fmtTime(h.StartedAt))
	heartbeat := fmtTime(h.HeartbeatAt)
	if d := h.HeartbeatInterval.D(); d > 0 && !h.HeartbeatAt.IsZero() {
		heartbeat += fmt.Sprintf(" (every %s)", d)
	}
	kv("HEARTBEAT", heartbeat)
	fmt.Fprintln(w)
	row(w, "PLUGIN", "INSTANCE", "STATE", "PID", "RESTARTS", "SINCE", "LAST EXIT", "REASON")
	for _, in := range h.Plugins {
		pid, since := "", ""
		if in.PID > 0 {
			pid = strconv.Itoa(in.PID)
		}
		if in.StartedAt != nil {
			since = fmtTime(*in.StartedAt)
		}
		row(w, in.Plugin, in.Instance, string(in.State), pid, strconv.Itoa(in.Restarts), since,
			lastExit(in.LastExit), in.Reason)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return printStderrTails(a.stdout, h.Plugins)
}

// instanceCount shows how many of a host's instances are RUNNING out of
// all it reports: "2/3".
func instanceCount(plugins []schemas.PluginInstance) string {
	running := 0
	for _, in := range plugins {
		if in.State == schemas.InstanceRunning {
			running++
		}
	}
	return fmt.Sprintf("%d/%d", running, len(plugins))
}

// lastExit shows how an instance's process ended: its cause, then the
// exit code or the signal ("exited code 1", "exited SIGKILL", "stopped").
func lastExit(e *schemas.InstanceExit) string {
	if e == nil {
		return ""
	}
	s := e.Cause
	if e.Code != nil {
		s += " code " + strconv.Itoa(*e.Code)
	}
	if e.Signal != "" {
		s += " " + e.Signal
	}
	return s
}

// printStderrTails writes, for every instance that failed (BACKOFF,
// FAILED) and has one, the last lines its process wrote to stderr,
// indented under a line naming the instance. A running instance's stderr
// is its log, which `plugins logs` shows.
func printStderrTails(w io.Writer, plugins []schemas.PluginInstance) error {
	for _, in := range plugins {
		if len(in.StderrTail) == 0 || (in.State != schemas.InstanceBackoff && in.State != schemas.InstanceFailed) {
			continue
		}
		lines := "lines"
		if len(in.StderrTail) == 1 {
			lines = "line"
		}
		if _, err := fmt.Fprintf(w, "\nstderr of %s/%s (last %d %s):\n", in.Plugin, in.Instance, len(in.StderrTail), lines); err != nil {
			return err
		}
		for _, l := range in.StderrTail {
			if _, err := fmt.Fprintf(w, "  %s\n", oneLine(l)); err != nil {
				return err
			}
		}
	}
	return nil
}
