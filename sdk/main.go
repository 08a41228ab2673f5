package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/tracing"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Exit codes of a plugin binary built with Main.
const (
	ExitOK    = 0 // define printed the manifest, or listen stopped on a signal
	ExitError = 1 // listen failed: no connection, registration refused, setup failed
	ExitUsage = 2 // unknown verb or flag, bad flag value
)

// Main is the whole main function of a plugin binary. It gives the binary
// two verbs, as Digital Rebar's plugin providers have:
//
//	NAME define   print the manifest as indented JSON and exit
//	NAME listen   connect to NATS and serve until SIGINT or SIGTERM
//
// listen takes --server/-s (default $NATS_URL, then nats://127.0.0.1:4222),
// --creds, --prefix, --metrics-addr HOST:PORT (default $PLUGBUS_METRICS_ADDR:
// serve the plugin's metrics there at /metrics), --config KEY=VALUE (repeatable; the initial config,
// VALUE parsed as JSON when it parses and taken as a string otherwise),
// --log-format console|json (default console on a terminal, json otherwise)
// and --log-level. setup registers the plugin's handlers; it runs for
// listen only. Main exits with ExitOK, ExitError or ExitUsage.
func Main(m schemas.Manifest, setup func(p *Plugin) error) {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr, m, setup))
}

// usageError marks command-line mistakes (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer, m schemas.Manifest, setup func(p *Plugin) error) int {
	root := newRootCommand(m, setup, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	name := m.Name
	if name == "" {
		name = "plugin"
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "run '%s --help' for usage\n", name)
		return ExitUsage
	}
	return ExitError
}

func newRootCommand(m schemas.Manifest, setup func(p *Plugin) error, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           m.Name + " define|listen",
		Short:         m.Description,
		Version:       version.String(m.Name, m.Version),
		SilenceErrors: true,
		SilenceUsage:  true,
		// Setting Args makes cobra report unknown verbs here instead of as
		// an untyped error.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown verb %q: use define or listen", args[0])}
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("missing verb: use define or listen")}
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newDefineCommand(m), newListenCommand(m, setup, stderr))
	return root
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.Name(), args)}
	}
	return nil
}

func newDefineCommand(m schemas.Manifest) *cobra.Command {
	return &cobra.Command{
		Use:   "define",
		Short: "Print the plugin's manifest as JSON",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := New(m)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(p.Manifest(), "", "  ")
			if err != nil {
				return fmt.Errorf("encode manifest: %w", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return err
		},
	}
}

type listenFlags struct {
	server, creds, prefix  string
	metricsAddr            string
	tlsCert, tlsKey, tlsCA string
	config                 []string
	logFormat, logLevel    string
}

func newListenCommand(m schemas.Manifest, setup func(p *Plugin) error, stderr io.Writer) *cobra.Command {
	var f listenFlags
	cmd := &cobra.Command{
		Use:   "listen",
		Short: "Connect to the bus and serve until SIGINT or SIGTERM",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listen(cmd.Context(), f, m, setup, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.server, "server", "s", os.Getenv(wire.EnvNATSURL), "NATS server URL (default $NATS_URL, then "+"nats://127.0.0.1:4222)")
	fl.StringVar(&f.creds, "creds", os.Getenv(wire.EnvNATSCreds), "NATS credentials file (default $NATS_CREDS)")
	fl.StringVar(&f.prefix, "prefix", envOr(wire.EnvPrefix, wire.DefaultPrefix), "subject prefix of the bus (default $PLUGBUS_PREFIX, then plugbus)")
	fl.StringVar(&f.tlsCert, "tlscert", os.Getenv(wire.EnvNATSCert), "client TLS certificate (default $NATS_CERT)")
	fl.StringVar(&f.tlsKey, "tlskey", os.Getenv(wire.EnvNATSKey), "client TLS key (default $NATS_KEY)")
	fl.StringVar(&f.tlsCA, "tlsca", os.Getenv(wire.EnvNATSCA), "CA certificate to verify the server with (default $NATS_CA)")
	fl.StringArrayVar(&f.config, "config", nil, "initial config KEY=VALUE (repeatable; VALUE is JSON if it parses, else a string)")
	fl.StringVar(&f.logFormat, "log-format", "", "log format: console or json (default console on a terminal, json otherwise)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fl.StringVar(&f.metricsAddr, "metrics-addr", os.Getenv(EnvMetricsAddr), "serve the plugin's Prometheus metrics on HOST:PORT at /metrics (default $"+EnvMetricsAddr+"; empty: not served)")
	return cmd
}

func listen(ctx context.Context, f listenFlags, m schemas.Manifest, setup func(p *Plugin) error, stderr io.Writer) error {
	logger, err := logging.New(stderr, f.logFormat, f.logLevel)
	if err != nil {
		flag := "--log-level"
		if errors.Is(err, logging.ErrFormat) {
			flag = "--log-format"
		}
		return usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	cfg, err := initialConfig(os.Getenv(wire.EnvConfig), f.config)
	if err != nil {
		return usageError{err}
	}
	opts := []Option{WithLogger(logger), WithConfig(cfg), WithHostInstance(os.Getenv(wire.EnvHost), os.Getenv(wire.EnvInstance))}
	if f.prefix != "" {
		opts = append(opts, WithPrefix(f.prefix))
	}
	// Tracing is on when the OpenTelemetry environment says so
	// (OTEL_EXPORTER_OTLP_ENDPOINT; docs/tracing.md).
	tp, shutdownTracing, err := tracing.Setup(ctx, m.Name, m.Version, func(err error) {
		logger.Warn().Err(err).Msg("tracing")
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			logger.Warn().Err(err).Msg("spans not exported before exit")
		}
	}()
	if tp != nil {
		opts = append(opts, WithTracerProvider(tp))
	}
	p, err := New(m, opts...)
	if err != nil {
		if errors.Is(err, ErrInvalidOption) {
			return usageError{err}
		}
		return err
	}
	if setup != nil {
		if err := setup(p); err != nil {
			return fmt.Errorf("set up plugin: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.metricsAddr != "" {
		stopMetrics, err := serveMetrics(ctx, p, f.metricsAddr)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	nc, err := Connect(ctx, ConnectConfig{URL: f.server, Creds: f.creds, Name: wire.PluginService(m.Name), Logger: p.Logger(),
		InboxPrefix: wire.InboxPrefix("plugin", m.Name), TLSCert: f.tlsCert, TLSKey: f.tlsKey, TLSCA: f.tlsCA})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return p.Run(ctx, nc)
}

// initialConfig is the config a plugin starts with: $PLUGBUS_CONFIG (a
// JSON object, as hostd passes it), then the --config flags over it.
func initialConfig(env string, flags []string) (map[string]any, error) {
	cfg, err := parseConfigFlags(flags)
	if err != nil || env == "" {
		return cfg, err
	}
	var base map[string]any
	if err := json.Unmarshal([]byte(env), &base); err != nil {
		return nil, fmt.Errorf("$%s is not a JSON object: %v", wire.EnvConfig, err)
	}
	if base == nil {
		base = map[string]any{}
	}
	for k, v := range cfg {
		base[k] = v
	}
	return base, nil
}

// parseConfigFlags turns KEY=VALUE pairs into a config map. VALUE is
// decoded as JSON when it is valid JSON (8080, true, ["a","b"], {"k":1},
// "quoted") and kept as a string otherwise (https://example.com).
func parseConfigFlags(pairs []string) (map[string]any, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	cfg := make(map[string]any, len(pairs))
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--config %q: want KEY=VALUE", kv)
		}
		var parsed any
		if err := json.Unmarshal([]byte(v), &parsed); err == nil {
			cfg[k] = parsed
		} else {
			cfg[k] = v
		}
	}
	return cfg, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
