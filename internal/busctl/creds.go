package busctl

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

// The identity commands: issue and revoke the credentials of plugins and
// hosts (docs/security.md). They need the admin's credentials.

func (a *app) pluginsCredsCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "creds NAME [--out FILE]",
		Short: "Issue new credentials for a plugin (a .creds file)",
		Long: `Issue new credentials for a plugin: a standard NATS .creds file (user JWT and
nkey seed) that the plugin connects with (listen --creds FILE, or $NATS_CREDS) and
the nats CLI accepts. The plugin may then do exactly what docs/security.md lists
for a plugin, under its own name. Issuing lifts a block that plugins revoke set.

With --out the file is written 0600 (replacing it); without, it is printed.
hostd obtains credentials for the plugins it runs by itself.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.PluginCreds(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printCreds(res, out)
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "write the credentials to FILE (0600) instead of printing them")
	return cmd
}

func (a *app) hostsCredsCommand() *cobra.Command {
	var out string
	var plugins []string
	cmd := &cobra.Command{
		Use:   "creds HOST --plugins NAME,…|'*' [--out FILE]",
		Short: "Issue new credentials for a host's hostd (a .creds file)",
		Long: `Issue new credentials for the hostd of HOST, naming the plugins placed on it:
hostd obtains credentials for those plugins only ('*' allows any plugin). Give
the file to hostd with creds: in its config file.

With --out the file is written 0600; without, it is printed.`,
		Args: exactArgs("HOST"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if len(plugins) == 0 {
				return usageErrf("busctl hosts creds needs --plugins: the plugins placed on %s (comma separated, or '*' for any)", args[0])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.HostCreds(cmd.Context(), args[0], plugins)
			if err != nil {
				return err
			}
			return a.printCreds(res, out)
		}),
	}
	cmd.Flags().StringSliceVar(&plugins, "plugins", nil, "the plugins placed on the host, comma separated ('*': any)")
	cmd.Flags().StringVar(&out, "out", "", "write the credentials to FILE (0600) instead of printing them")
	return cmd
}

// printCreds writes credentials to a 0600 file or to stdout.
func (a *app) printCreds(res *schemas.CredsResponse, out string) error {
	if out != "" {
		if err := os.WriteFile(out, []byte(res.Creds), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", out, err)
		}
		// WriteFile keeps the mode of a file that exists.
		if err := os.Chmod(out, 0o600); err != nil {
			return err
		}
	}
	if a.structured() {
		return a.printValue(res)
	}
	if out == "" {
		_, err := fmt.Fprint(a.stdout, res.Creds)
		return err
	}
	who := res.Role
	if res.Name != "" {
		who += " " + res.Name
	}
	_, err := fmt.Fprintf(a.stdout, "credentials of %s written to %s (user %s)\n", who, out, res.PublicKey)
	return err
}

func (a *app) revokeCommand(kind string, revoke func(ctx context.Context, name string) (*schemas.RevokeResponse, error)) *cobra.Command {
	upper := strings.ToUpper(kind)
	return &cobra.Command{
		Use:   "revoke " + upper,
		Short: "Revoke every credential of a " + kind + " and cut off its connections",
		Long: fmt.Sprintf(`Revoke every credential ever issued to the %[1]s: the server closes its
connections at once and refuses the old credentials from then on; an
io.plugbus.identity.v1.revoked event records it. For a plugin, hosts cannot
obtain new credentials for it either, until an admin issues them (plugins creds).`, kind),
		Args: exactArgs(upper),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if _, err := a.client(); err != nil {
				return err
			}
			res, err := revoke(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(res)
			}
			_, err = fmt.Fprintf(a.stdout, "revoked %d credentials of %s %s; its connections are closed\n", res.Revoked, res.Role, res.Name)
			return err
		}),
	}
}

func (a *app) pluginsRevokeCommand() *cobra.Command {
	return a.revokeCommand("plugin", func(ctx context.Context, name string) (*schemas.RevokeResponse, error) {
		c, err := a.client()
		if err != nil {
			return nil, err
		}
		return c.RevokePlugin(ctx, name)
	})
}

func (a *app) hostsRevokeCommand() *cobra.Command {
	return a.revokeCommand("host", func(ctx context.Context, name string) (*schemas.RevokeResponse, error) {
		c, err := a.client()
		if err != nil {
			return nil, err
		}
		return c.RevokeHost(ctx, name)
	})
}
