package busctl

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// The plugins subcommands that write operators' overrides for hostd:
// enable, disable, restart. The broker stores the override; the host's
// hostd acts on it a moment later (`busctl hosts get HOST` shows it).

func (a *app) pluginsEnableCommand() *cobra.Command {
	return a.hostControlCommand("enable", "enabled", "hostd starts it if the host's labels place it there",
		"Let hostd run a plugin on a host again", (*client.Client).EnablePlugin)
}

func (a *app) pluginsDisableCommand() *cobra.Command {
	return a.hostControlCommand("disable", "disabled", "hostd stops it",
		"Make hostd stop a plugin on a host and keep it stopped", (*client.Client).DisablePlugin)
}

// hostControlCommand builds `plugins enable` and `plugins disable`: both
// need --host.
func (a *app) hostControlCommand(verb, done, effect, short string,
	call func(*client.Client, context.Context, string, string) (*schemas.PluginHostResponse, error)) *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   verb + " NAME --host HOST",
		Short: short,
		Long: short + `: the broker stores an override for the plugin on that host, which
wins over the enabled setting of the host's hostd config file and lasts until
the opposite command. hostd acts on it a moment later; ` + "`busctl hosts get HOST`" + `
shows the instances' state.

-o json prints the PluginHostResponse {"controls": [HostControl…]}.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if host == "" {
				return usageErrf("%s needs --host HOST: the host to %s %s on (`busctl hosts ls` lists the hosts)",
					cmd.CommandPath(), verb, args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := call(c, cmd.Context(), args[0], host)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(res)
			}
			for _, ctl := range res.Controls {
				if _, err := fmt.Fprintf(a.stdout, "%s %s on host %s (%s)\n", done, ctl.Plugin, ctl.Host, effect); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "the host to "+verb+" the plugin on (required)")
	return cmd
}

func (a *app) pluginsRestartCommand() *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "restart NAME [--host HOST]",
		Short: "Make hostd restart a plugin's instances, on one host or on every host that runs it",
		Long: `Make hostd restart a plugin's instances: on --host HOST, or without --host on
every host whose hostd reports an instance of the plugin. The broker stores a
restart request per host; each hostd stops the instances and starts them again
a moment later (RESTARTS and SINCE in ` + "`busctl hosts get HOST`" + ` change).

-o json prints the PluginHostResponse {"controls": [HostControl…]}, one per host.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = func(e *schemas.Error) string {
				if e.Code == schemas.CodeNotFound && host == "" && detailString(e, schemas.DetailKind) == "plugin" {
					return "no hostd reports an instance of it: `busctl hosts ls` lists the hosts, `busctl hosts get HOST` what each runs"
				}
				return ""
			}
			res, err := c.RestartPlugin(cmd.Context(), args[0], host)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(res)
			}
			for _, ctl := range res.Controls {
				if _, err := fmt.Fprintf(a.stdout, "restart of %s requested on host %s (hostd restarts its instances)\n", ctl.Plugin, ctl.Host); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "only on this host (default: every host that runs the plugin)")
	return cmd
}
