// Command broker runs the plugbus core. With no flags it embeds a
// nats-server with JetStream (data under ./data, NATS on 127.0.0.1:4222)
// and serves /healthz and /metrics on 127.0.0.1:8080.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		var inUse *broker.AddressInUseError
		if errors.As(err, &inUse) {
			fmt.Fprintf(os.Stderr, "hint: choose another address with --%s (or $PLUGBUS_%s)\n", inUse.Setting, envName(inUse.Setting))
		}
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var cfg broker.Config
	var logFormat, logLevel string
	cmd := &cobra.Command{
		Use:           "broker",
		Short:         "Run the plugbus broker (embedded NATS JetStream by default)",
		Args:          cobra.NoArgs,
		Version:       version.String("broker", broker.Version),
		SilenceUsage:  true,
		SilenceErrors: true,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envDefaults(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, logFormat, logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = &log
			b, err := broker.New(cfg)
			if err != nil {
				return err
			}
			if err := b.Run(cmd.Context()); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	cmd.SetVersionTemplate("{{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", broker.DefaultDataDir, "where the embedded NATS server keeps JetStream data")
	f.StringVar(&cfg.Listen, "listen", broker.DefaultListen, "NATS client address of the embedded server (HOST:PORT)")
	f.StringVar(&cfg.HTTPAddr, "http", broker.DefaultHTTPAddr, "HTTP address for /healthz and /metrics (empty disables)")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "use this NATS server instead of embedding one")
	f.StringVar(&cfg.Creds, "creds", "", "NATS credentials file (with --nats-url)")
	f.StringVar(&cfg.Prefix, "prefix", wire.DefaultPrefix, "subject prefix of the bus")
	f.IntVar(&cfg.Replicas, "replicas", 1, "replicas of streams and buckets (3 on a cluster)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", broker.DefaultHeartbeatInterval, "how often plugins are checked for a running instance")
	f.DurationVar(&cfg.PluginTimeout, "plugin-timeout", broker.DefaultPluginTimeout, "timeout of each init, config and verify call")
	f.DurationVar(&cfg.ActionTimeout, "action-timeout", broker.DefaultActionTimeout, "timeout of an action call")
	f.DurationVar(&cfg.EventMaxAge, "event-max-age", broker.DefaultEventMaxAge, "how long events are kept in the stream for replay")
	f.DurationVar(&cfg.DLQMaxAge, "dlq-max-age", broker.DefaultDLQMaxAge, "how long dead letters are kept")
	f.Int64Var(&cfg.DLQMaxBytes, "dlq-max-bytes", broker.DefaultDLQMaxBytes, "size bound of the dead-letter stream (oldest go first)")
	f.DurationVar(&cfg.LogMaxAge, "log-max-age", broker.DefaultLogMaxAge, "how long plugin log lines forwarded by hostd are kept")
	f.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", broker.DefaultLogMaxBytes, "size bound of the log stream (oldest go first)")
	f.IntVar(&cfg.MaxConcurrentObjects, "max-concurrent-objects", broker.DefaultMaxConcurrentObjects, "objects (jobs, machines, alerts) with an operation in progress at once")
	f.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", broker.DefaultMaxRequestBytes, "largest API request accepted")
	f.BoolVar(&cfg.ServerLogs, "server-logs", false, "include the embedded nats-server's own logs")
	f.StringVar(&logFormat, "log-format", "", "console or json (default: console on a terminal, json otherwise)")
	f.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	return cmd
}

// envDefaults fills every flag not given on the command line from
// PLUGBUS_<FLAG> (dashes as underscores, upper case), e.g. PLUGBUS_DATA_DIR.
func envDefaults(fs *pflag.FlagSet) error {
	var firstErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil {
			return
		}
		name := "PLUGBUS_" + envName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				firstErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	return firstErr
}

func envName(flag string) string {
	out := []byte(flag)
	for i, c := range out {
		switch {
		case c == '-':
			out[i] = '_'
		case c >= 'a' && c <= 'z':
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}
