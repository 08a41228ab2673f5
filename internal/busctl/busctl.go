// Package busctl implements the busctl command line: a terminal front end
// to the plugbus broker API (through sdk/client) and a reader of the event,
// dead-letter and plugin log streams (through JetStream ordered consumers).
//
// cmd/busctl/main.go only calls Execute, so tests run every command
// in-process.
package busctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/tracing"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// Exit codes of Execute.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = 0
	// ExitError: the broker or NATS refused or failed the request.
	ExitError = 1
	// ExitUsage: the command line is wrong (unknown command or flag, bad
	// argument count, malformed K=V, invalid -o).
	ExitUsage = 2
)

// DefaultServer is the NATS URL used when neither --server nor $NATS_URL is
// set: where `make run` (the broker's embedded NATS server) listens.
const DefaultServer = "nats://127.0.0.1:4222"

// Output formats accepted by -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

var outputFormats = []string{outputTable, outputJSON, outputYAML}

// app holds the global flags and the lazily opened connection of one run.
type app struct {
	stdout, stderr io.Writer

	server string
	// serverFlag tells whether --server was given (it then wins over the
	// nats context's server).
	serverFlag  *pflag.Flag
	natsContext string
	// contextSelected tells that natsContext is the nats CLI's selected
	// context rather than --context or $NATS_CONTEXT.
	contextSelected bool
	creds           string
	// credsFrom says where the credentials came from, for error hints.
	credsFrom string

	tlsCert, tlsKey, tlsCA string
	prefix                 string
	timeout                time.Duration
	output                 string

	nc *nats.Conn
	// deny cancels the run when the NATS server refuses one of busctl's
	// publishes or subscriptions: the request would otherwise wait for
	// --timeout and report a timeout.
	deny   context.CancelCauseFunc
	runCtx context.Context
	// running is set once a command's RunE starts: any error before that
	// is a usage error.
	running bool
	// hint, when set by the running command, explains an API error in
	// terms of that command's flags (such as --param for missing_param).
	hint func(*schemas.Error) string
	// tracer starts a span per command when tracing is on
	// (docs/tracing.md); the calls it makes carry it to the broker.
	tracer wire.Tracer
}

// Execute runs busctl with args (without the program name), writing results
// to stdout and errors to stderr, and returns the process exit code
// (ExitOK, ExitError or ExitUsage). Cancelling ctx (Ctrl-C) stops a running
// command; `events tail --follow` and `plugins logs --follow` then end
// with ExitOK.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	tp, shutdownTracing, err := tracing.Setup(ctx, "busctl", version.Release, func(err error) {
		fmt.Fprintf(stderr, "busctl: tracing: %v\n", err)
	})
	if err != nil {
		fmt.Fprintf(stderr, "busctl: %v\n", err)
		return ExitError
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	a.tracer = wire.NewTracer(tp)
	ctx, a.deny = context.WithCancelCause(ctx)
	a.runCtx = ctx
	defer a.deny(nil)
	defer func() {
		if a.nc != nil {
			a.nc.Close()
		}
	}()
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	return a.report(cmd, err)
}

func (a *app) rootCommand() *cobra.Command {
	server := os.Getenv("NATS_URL")
	if server == "" {
		server = DefaultServer
	}
	root := &cobra.Command{
		Use:   "busctl",
		Short: "Drive a plugbus bus from the terminal",
		Long: `busctl talks to the plugbus broker over NATS: it lists, configures and verifies
plugins, shows the hosts hostd runs them on and enables, disables and restarts
them there, deploys and deletes jobs, runs machine actions and follows, lists
and cancels long ones, fires, resolves and lists alerts, shows the hook chains
and the chain runs the broker journalled,
reads the event, dead-letter and plugin log streams, replays and purges dead
letters, and logs a browser in to the broker's dashboard as the admin.

Every command prints a table, or with -o json or -o yaml its data (the same
field names in both). busctl connects as the nats CLI does: --server, --creds,
or a saved nats context (--context, else the one nats context select chose).

Exit codes: 0 success, 1 the broker or NATS failed the request, 2 usage error.`,
		Version:           version.String("busctl", version.Release),
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.validateGlobals,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	f := root.PersistentFlags()
	f.StringVarP(&a.server, "server", "s", server, "NATS server URL(s), comma separated; defaults to $NATS_URL when set")
	f.StringVar(&a.natsContext, "context", os.Getenv("NATS_CONTEXT"), "nats CLI context to connect with (its server, credentials and TLS; default $NATS_CONTEXT, then the one selected with nats context select)")
	a.serverFlag = f.Lookup("server")
	f.StringVar(&a.creds, "creds", "", "NATS credentials file (default $NATS_CREDS, then the local admin's, $PLUGBUS_DATA_DIR/creds/admin.creds, when it exists)")
	f.StringVar(&a.tlsCert, "tlscert", os.Getenv(wire.EnvNATSCert), "client TLS certificate (default $NATS_CERT)")
	f.StringVar(&a.tlsKey, "tlskey", os.Getenv(wire.EnvNATSKey), "client TLS key (default $NATS_KEY)")
	f.StringVar(&a.tlsCA, "tlsca", os.Getenv(wire.EnvNATSCA), "CA certificate to verify the server with (default $NATS_CA)")
	f.StringVar(&a.prefix, "prefix", wire.DefaultPrefix, "subject prefix of the bus")
	f.DurationVar(&a.timeout, "timeout", client.DefaultTimeout, "how long to wait for the broker or NATS")
	f.StringVarP(&a.output, "output", "o", outputTable, "output format: "+strings.Join(outputFormats, "|"))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(flagError(err)) })

	root.AddCommand(a.pluginsCommand(), a.hostsCommand(), a.jobCommand(), a.machineCommand(), a.alertCommand(),
		a.hooksCommand(), a.chainsCommand(), a.eventsCommand(), a.actionsCommand(), a.dlqCommand(), a.dashboardCommand())
	a.completionCommand(root)
	a.setCompletions(root)
	return root
}

// flagError rewrites pflag's "invalid argument" errors, which quote Go
// parser internals (strconv.ParseInt: parsing "abc": invalid syntax), as
// `invalid value "abc" for --count: must be a whole number`.
func flagError(err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) || ive.GetFlag() == nil {
		return err
	}
	f := ive.GetFlag()
	var want string
	switch typ := f.Value.Type(); typ {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "count":
		want = "must be a whole number"
		if errors.Is(err, strconv.ErrRange) {
			want = "the number is out of range"
		}
	case "float32", "float64":
		want = "must be a number"
	case "duration":
		want = "must be a duration such as 500ms, 10s, 2m or 1h30m"
	case "bool":
		want = "must be true or false"
	default:
		if cause := errors.Unwrap(err); cause != nil {
			want = cause.Error()
		} else {
			return err
		}
	}
	return fmt.Errorf("invalid value %q for --%s: %s", ive.GetValue(), f.Name, want)
}

// group makes cmd a command group: alone it prints its help; with an
// unknown subcommand it is a usage error (cobra would print help and
// succeed).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usageErrf("unknown command %q for %q: use one of %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
	return cmd
}

// validateGlobals checks the global flags before any command runs.
func (a *app) validateGlobals(*cobra.Command, []string) error {
	switch a.output {
	case outputTable, outputJSON, outputYAML:
	default:
		return usageErrf("invalid output format %q for -o: use one of %s", a.output, strings.Join(outputFormats, ", "))
	}
	if a.timeout <= 0 {
		return usageErrf("--timeout must be positive, got %s", a.timeout)
	}
	if err := wire.ValidatePrefix(a.prefix); err != nil {
		return usageErrf("invalid --prefix: %v", err)
	}
	return nil
}

// run wraps a command body: from here on, errors are not usage errors
// unless marked so.
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) (err error) {
		a.running = true
		if a.tracer.Enabled() {
			ctx, span := a.tracer.Start(cmd.Context(), trace.SpanKindClient, "busctl", strings.TrimPrefix(cmd.CommandPath(), "busctl "))
			cmd.SetContext(ctx)
			defer func() { wire.EndSpan(span, err) }()
		}
		return fn(cmd, args)
	}
}

// conn connects to NATS on first use.
func (a *app) conn() (*nats.Conn, error) {
	if a.nc != nil {
		return a.nc, nil
	}
	opts := []nats.Option{nats.Name("busctl"), nats.Timeout(a.timeout), nats.ErrorHandler(a.asyncError)}
	server := a.server
	if a.natsContext == "" {
		// Like the nats CLI: with no --context (nor $NATS_CONTEXT), the
		// context `nats context select` chose, when there is one.
		a.natsContext = natscontext.SelectedContext()
		a.contextSelected = a.natsContext != ""
	}
	if a.natsContext != "" {
		nctx, err := natscontext.New(a.natsContext, true)
		if err != nil {
			if a.contextSelected {
				return nil, usageErrf("cannot load nats context %q, which `nats context select` chose (%s): %v; select another with `nats context select NAME`, or unselect it with `nats context unselect`",
					a.natsContext, selectedContextFile(), err)
			}
			return nil, usageErrf("cannot load nats context %q (`nats context ls` lists them): %v", a.natsContext, err)
		}
		copts, err := nctx.NATSOptions()
		if err != nil {
			return nil, usageErrf("nats context %q: %v", a.natsContext, err)
		}
		opts = append(copts, opts...)
		if nctx.ServerURL() != "" && (a.serverFlag == nil || !a.serverFlag.Changed) && os.Getenv("NATS_URL") == "" {
			server = nctx.ServerURL()
		}
	}
	creds, from := a.resolveCreds()
	a.credsFrom = from
	if creds != "" {
		if _, err := os.Stat(creds); err != nil {
			return nil, usageErrf("cannot read the credentials file (%s): %v", from, err)
		}
		opts = append(opts, nats.UserCredentials(creds))
	}
	if (a.tlsCert == "") != (a.tlsKey == "") {
		return nil, usageErrf("--tlscert and --tlskey go together")
	}
	if a.tlsCert != "" {
		opts = append(opts, nats.ClientCert(a.tlsCert, a.tlsKey))
	}
	if a.tlsCA != "" {
		opts = append(opts, nats.RootCAs(a.tlsCA))
	}
	a.server = server
	nc, err := nats.Connect(a.server, opts...)
	if err != nil {
		return nil, &connectError{url: a.server, err: err}
	}
	a.nc = nc
	return nc, nil
}

// selectedContextFile is where the nats CLI keeps the name of the
// selected context.
func selectedContextFile() string {
	root := os.Getenv("XDG_CONFIG_HOME")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".config")
	}
	return filepath.Join(root, "nats", "context.txt")
}

// asyncError handles the errors the NATS server sends outside a request:
// a permissions violation ends the run with a forbidden error that names
// the subject; the rest are reported on stderr.
func (a *app) asyncError(_ *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		fmt.Fprintf(a.stderr, "nats: %v\n", err)
		return
	}
	// "nats: permissions violation: Permissions Violation for Publish to
	// "x.y" on connection [7]": keep the server's words, they name the
	// subject and the operation.
	msg := strings.TrimPrefix(err.Error(), nats.ErrPermissionViolation.Error()+": ")
	if i := strings.Index(msg, " on connection ["); i > 0 {
		msg = msg[:i]
	}
	msg = strings.NewReplacer("Permissions Violation for Publish to", "publish to",
		"Permissions Violation for Subscription to", "subscribe to").Replace(msg)
	e := &schemas.Error{Code: schemas.CodeForbidden,
		Message: "the NATS server does not allow these credentials to " + msg}
	a.deny(e)
}

// resolveCreds picks the credentials: --creds, then $NATS_CREDS, then
// the local admin's that an embedded broker writes to its data dir
// ($PLUGBUS_DATA_DIR, default ./data) when that file exists.
func (a *app) resolveCreds() (path, from string) {
	if a.creds != "" {
		return a.creds, "--creds " + a.creds
	}
	if c := os.Getenv("NATS_CREDS"); c != "" {
		return c, "$NATS_CREDS " + c
	}
	if a.natsContext != "" {
		// The context brings its own credentials (or none).
		if a.contextSelected {
			return "", "the selected nats context " + a.natsContext
		}
		return "", "nats context " + a.natsContext
	}
	dir := os.Getenv("PLUGBUS_DATA_DIR")
	if dir == "" {
		dir = "data"
	}
	local := filepath.Join(dir, "creds", "admin.creds")
	if _, err := os.Stat(local); err == nil {
		return local, "the local admin's " + local
	}
	return "", "none"
}

// client returns a broker API client over the connection.
func (a *app) client() (*client.Client, error) {
	nc, err := a.conn()
	if err != nil {
		return nil, err
	}
	return client.New(nc, client.WithPrefix(a.prefix), client.WithTimeout(a.timeout)), nil
}

// callCtx bounds one request by --timeout.
func (a *app) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// structured reports whether -o asks for data (json or yaml) rather than
// a table.
func (a *app) structured() bool { return a.output == outputJSON || a.output == outputYAML }

// exactArgs is cobra.ExactArgs with names, so the message says what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(args) < len(names) {
			return usageErrf("%s needs %s; missing %s", cmd.CommandPath(), strings.Join(names, " "),
				strings.Join(names[len(args):], " "))
		}
		return usageErrf("%s takes %d argument(s) (%s), got %d: %q", cmd.CommandPath(), len(names),
			strings.Join(names, " "), len(args), args)
	}
}
