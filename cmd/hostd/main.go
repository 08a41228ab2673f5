// Command hostd is the plugbus host daemon: it runs this host's plugins as
// supervised processes, as its config file and the operators' overrides
// say, forwards their logs and reports the host. See docs/hostd.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/hostd"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "hostd:", err)
		if errors.Is(err, hostd.ErrInvalidConfig) {
			fmt.Fprintln(os.Stderr, "hint: docs/hostd.md describes the config file")
		}
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var configPath, logFormat, logLevel string
	var tls hostd.TLSConfig
	cmd := &cobra.Command{
		Use:           "hostd",
		Short:         "Run this host's plugbus plugins as supervised processes",
		Args:          cobra.NoArgs,
		Version:       version.String("hostd", version.Release),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, logFormat, logLevel)
			if err != nil {
				return err
			}
			opts := hostd.Options{ConfigPath: configPath, Logger: log}
			if tls != (hostd.TLSConfig{}) {
				opts.TLS = &tls
			}
			d, err := hostd.New(opts)
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					d.Reload()
				}
			}()
			return d.Run(cmd.Context())
		},
	}
	cmd.SetVersionTemplate("{{.Version}}\n")
	def := os.Getenv("PLUGBUS_HOSTD_CONFIG")
	if def == "" {
		def = "hostd.yaml"
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", def, "config file (YAML or JSON; default $PLUGBUS_HOSTD_CONFIG, then hostd.yaml)")
	f.StringVar(&tls.Cert, "tlscert", os.Getenv(wire.EnvNATSCert), "client TLS certificate, instead of the config's tls.cert (default $NATS_CERT)")
	f.StringVar(&tls.Key, "tlskey", os.Getenv(wire.EnvNATSKey), "client TLS key, instead of the config's tls.key (default $NATS_KEY)")
	f.StringVar(&tls.CA, "tlsca", os.Getenv(wire.EnvNATSCA), "CA to verify the server with, instead of the config's tls.ca (default $NATS_CA)")
	f.StringVar(&logFormat, "log-format", "", "console or json (default: console on a terminal, json otherwise)")
	f.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	return cmd
}
