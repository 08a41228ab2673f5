package busctl

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/broker/dashboard/token"
)

// DefaultDashboardURL is where `make run`'s broker serves the dashboard.
const DefaultDashboardURL = "http://127.0.0.1:8080"

// dashboardLogin is what dashboard login prints with -o json or yaml.
type dashboardLogin struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

func (a *app) dashboardCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "dashboard",
		Short: "The broker's web dashboard (docs/dashboard.md)",
	})
	cmd.AddCommand(a.dashboardLoginCommand())
	return cmd
}

func (a *app) dashboardLoginCommand() *cobra.Command {
	base := os.Getenv("PLUGBUS_DASHBOARD_URL")
	if base == "" {
		base = DefaultDashboardURL
	}
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "login [--url URL] [--ttl 12h]",
		Short: "Print a URL that logs a browser in to the dashboard as the admin",
		Long: `Print a URL that logs a browser in to the dashboard as the admin, so it can
verify, enable and disable plugins and replay dead letters. Anyone who reaches
the dashboard may look; only an admin may act.

The URL carries a login token signed, here and offline, with the admin's
credentials (--creds, $NATS_CREDS or the local admin's, as for every command):
the broker checks that they are an admin's of its bus and not revoked. The
token is the browser's session until --ttl ends it. Treat the URL as a
password: it is one, for --ttl.`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			path, from := a.resolveCreds()
			if path == "" {
				return usageErrf("dashboard login signs with the admin's credentials file, and found none (%s): give --creds FILE", from)
			}
			creds, err := os.ReadFile(path)
			if err != nil {
				return usageErrf("cannot read the credentials file (%s): %v", from, err)
			}
			role, err := token.Role(creds)
			if err != nil {
				return usageErrf("the credentials file (%s): %v", from, err)
			}
			if role != "admin" {
				return usageErrf("the credentials (%s) are not an admin's (role %q): dashboard login needs the admin's", from, role)
			}
			tok, err := token.New(creds, ttl, time.Now())
			if err != nil {
				return usageErr(err)
			}
			u := token.LoginURL(base, tok)
			if a.structured() {
				return a.printValue(dashboardLogin{URL: u, Expires: time.Now().Add(ttl).UTC().Truncate(time.Second)})
			}
			fmt.Fprintln(a.stdout, u)
			return nil
		}),
	}
	cmd.Flags().StringVar(&base, "url", base, "the dashboard's address: the broker's HTTP port ($PLUGBUS_DASHBOARD_URL when set)")
	cmd.Flags().DurationVar(&ttl, "ttl", token.DefaultTTL, fmt.Sprintf("how long the login (and the browser's session) lasts, at most %gh", token.MaxTTL.Hours()))
	return cmd
}
