// Command broker runs the plugbus core. With no flags it embeds a
// nats-server with JetStream (data under ./data, NATS on 127.0.0.1:4222)
// and serves /healthz, /metrics and the alert intake (POST /v1/alerts) on
// 127.0.0.1:8080.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/tracing"
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
			// Tracing is on when the OpenTelemetry environment says so
			// (OTEL_EXPORTER_OTLP_ENDPOINT; docs/tracing.md).
			tp, shutdownTracing, err := tracing.Setup(cmd.Context(), wire.BrokerService, broker.Version, func(err error) {
				log.Warn().Err(err).Msg("tracing")
			})
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := shutdownTracing(ctx); err != nil {
					log.Warn().Err(err).Msg("spans not exported before exit")
				}
			}()
			if tp != nil {
				cfg.TracerProvider = tp
				log.Info().Str("endpoint", tracingEndpoint()).Msg("tracing on: exporting spans over OTLP")
			}
			if err := defaultAccount(&cfg); err != nil {
				return err
			}
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
	f.StringVar(&cfg.HTTPAddr, "http", broker.DefaultHTTPAddr, "HTTP address for /healthz, /metrics and POST /v1/alerts (empty disables)")
	f.StringVar(&cfg.AlertsToken, "alerts-token", "", "bearer token POST /v1/alerts requires (prefer $PLUGBUS_ALERTS_TOKEN or --alerts-token-file: flags show in ps); without one the intake is off unless --http is loopback")
	f.StringVar(&cfg.AlertsTokenFile, "alerts-token-file", "", "file holding the bearer token POST /v1/alerts requires (instead of --alerts-token)")
	f.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's runtime profiles under /debug/pprof/ on --http")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "use this NATS server instead of embedding one")
	f.StringVar(&cfg.Creds, "creds", "", "NATS credentials file (with --nats-url)")
	f.StringVar(&cfg.AccountSigningKey, "account-signing-key", "", "nkey seed file of the bus account's signing key, to issue plugbus credentials on an external NATS (with --nats-url; docs/security.md)")
	f.StringVar(&cfg.Account, "account", "", "public key of the bus account (with --account-signing-key; default: the account of --creds)")
	f.StringVar(&cfg.TLSCert, "tlscert", "", "client TLS certificate (with --nats-url)")
	f.StringVar(&cfg.TLSKey, "tlskey", "", "client TLS key (with --nats-url)")
	f.StringVar(&cfg.TLSCA, "tlsca", "", "CA certificate to verify the NATS server with (with --nats-url)")
	f.StringVar(&cfg.ServerTLSCert, "server-tlscert", "", "TLS certificate of the embedded server's client port")
	f.StringVar(&cfg.ServerTLSKey, "server-tlskey", "", "TLS key of the embedded server's client port")
	f.StringVar(&cfg.Prefix, "prefix", wire.DefaultPrefix, "subject prefix of the bus")
	f.IntVar(&cfg.Replicas, "replicas", 1, "replicas of streams and buckets (3 on a cluster)")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", broker.DefaultLeaseTTL, "TTL of the broker's lease on the bus: leadership and object locks of a crashed broker pass on after it (docs/scale-out.md)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", broker.DefaultHeartbeatInterval, "how often plugins are checked for a running instance")
	f.DurationVar(&cfg.PluginTimeout, "plugin-timeout", broker.DefaultPluginTimeout, "timeout of each init, config and verify call")
	f.DurationVar(&cfg.ActionTimeout, "action-timeout", broker.DefaultActionTimeout, "timeout of an action whose manifest declares none (docs/protocol.md#actions)")
	f.DurationVar(&cfg.EventMaxAge, "event-max-age", broker.DefaultEventMaxAge, "how long events are kept in the stream for replay")
	f.DurationVar(&cfg.EventDedupWindow, "event-dedup-window", broker.DefaultEventDedupWindow, "how long the event stream drops a repeated event id (at least 5s; about 100 bytes of memory per event within it)")
	f.Int64Var(&cfg.EventMaxBytes, "event-max-bytes", broker.DefaultEventMaxBytes, "size bound of the event stream (oldest go first)")
	f.DurationVar(&cfg.AlertRetention, "alert-retention", broker.DefaultAlertRetention, "how long a resolved or suppressed alert stays in the alerts bucket")
	f.DurationVar(&cfg.JobRetention, "job-retention", broker.DefaultJobRetention, "how long a deleted job stays in the jobs bucket")
	f.DurationVar(&cfg.ActionRetention, "action-retention", broker.DefaultActionRetention, "how long a finished action stays in the actions bucket")
	f.DurationVar(&cfg.ActionProgressInterval, "action-progress-interval", broker.DefaultActionProgressInterval, "least time between two progress events of one action")
	f.DurationVar(&cfg.IdempotencyWindow, "idempotency-window", broker.DefaultIdempotencyWindow, "how long the reply to a request with an Idempotency-Key is kept for repeats")
	f.DurationVar(&cfg.ChainRetention, "chain-retention", broker.DefaultChainRetention, "how long the chain journal keeps hook chain runs (chains get, resuming after a crash)")
	f.Int64Var(&cfg.ChainMaxBytes, "chain-max-bytes", broker.DefaultChainMaxBytes, "the chain journal's size limit, oldest entries dropped first")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", broker.DefaultDrainTimeout, "on SIGTERM, how long requests in flight may take to finish")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", broker.DefaultRequestTimeout, "deadline of a request whose caller sent none")
	f.StringVar(&cfg.AckSampling, "ack-sampling", broker.AckSamplingOn, "report every acknowledgement of plugin consumers (plugbus_consumer_acked_total): on or off (docs/performance.md gives its cost)")
	f.IntVar(&cfg.HookConcurrency, "hook-concurrency", broker.DefaultHookConcurrency, "calls in flight to one hook point at once")
	f.IntVar(&cfg.PluginConcurrency, "plugin-concurrency", broker.DefaultPluginConcurrency, "calls in flight to one plugin at once")
	f.DurationVar(&cfg.DLQMaxAge, "dlq-max-age", broker.DefaultDLQMaxAge, "how long dead letters are kept")
	f.Int64Var(&cfg.DLQMaxBytes, "dlq-max-bytes", broker.DefaultDLQMaxBytes, "size bound of the dead-letter stream (oldest go first)")
	f.DurationVar(&cfg.LogMaxAge, "log-max-age", broker.DefaultLogMaxAge, "how long plugin log lines forwarded by hostd are kept")
	f.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", broker.DefaultLogMaxBytes, "size bound of the log stream (oldest go first)")
	f.IntVar(&cfg.MaxConcurrentObjects, "max-concurrent-objects", broker.DefaultMaxConcurrentObjects, "objects (jobs, machines, alerts) with an operation in progress at once")
	f.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", broker.DefaultMaxRequestBytes, "largest API request accepted")
	f.BoolVar(&cfg.ServerLogs, "server-logs", false, "include the embedded nats-server's own logs")
	f.StringVar(&logFormat, "log-format", "", "console or json (default: console on a terminal, json otherwise)")
	f.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	cmd.AddCommand(authCommand())
	return cmd
}

// authCommand is `broker auth init DIR`: identities for a bus on an
// external NATS server.
func authCommand() *cobra.Command {
	auth := &cobra.Command{
		Use:   "auth",
		Short: "Set up plugbus identities for an external NATS server",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var prefix string
	initCmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Create the operator, accounts, signing key, nats-server config and the broker's and an admin's credentials in DIR",
		Long: `init creates in DIR what a broker on an external NATS server needs to issue
every plugin's and host's credentials, as the embedded broker does in its data
dir: the NATS operator, system and plugbus accounts, the account signing key
(nkey seeds, 0600), plugbus-auth.conf for the nats-server to include, and the
broker's and an admin's credentials. Run again, it keeps the keys. It prints
how to start the server and the broker (docs/security.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ea, err := broker.InitExternalAuth(args[0], prefix)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "plugbus identities in %s\n\n", args[0])
			fmt.Fprintf(out, "1. Copy %s next to the NATS server's config file and include it there\n   (include paths are relative to the including file; JetStream must be on):\n     include %s\n\n",
				ea.ServerConfig, filepath.Base(ea.ServerConfig))
			fmt.Fprintf(out, "2. Start the broker against it:\n     broker --nats-url nats://HOST:4222 --creds %s \\\n       --account-signing-key %s --account %s\n\n",
				ea.BrokerCreds, ea.SigningKey, ea.Account)
			fmt.Fprintf(out, "3. Use busctl as the admin:\n     busctl --server nats://HOST:4222 --creds %s plugins ls\n", ea.AdminCreds)
			return nil
		},
	}
	initCmd.Flags().StringVar(&prefix, "prefix", wire.DefaultPrefix, "subject prefix of the bus (the broker's --prefix)")
	auth.AddCommand(initCmd)
	return auth
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

// tracingEndpoint is where spans go, for the log.
func tracingEndpoint() string {
	if v := os.Getenv(tracing.EnvTracesEndpoint); v != "" {
		return v
	}
	return os.Getenv(tracing.EnvEndpoint)
}
