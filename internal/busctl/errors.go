package busctl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// hintStartBroker is what to do when nothing answers.
const hintStartBroker = "is the broker running? start it with `make run`, or point --server (or $NATS_URL) at the bus's NATS server"

// usageError is a wrong command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErr(err error) error { return &usageError{err: err} }

func usageErrf(format string, args ...any) error { return usageErr(fmt.Errorf(format, args...)) }

// connectError is a failure to reach the NATS server.
type connectError struct {
	url string
	err error
}

func (e *connectError) Error() string {
	return fmt.Sprintf("cannot connect to NATS at %s: %v", e.url, e.err)
}
func (e *connectError) Unwrap() error { return e.err }

// streamError is a failure to read one of the bus's streams.
type streamError struct {
	stream string
	err    error
}

func (e *streamError) Error() string { return fmt.Sprintf("stream %s: %v", e.stream, e.err) }
func (e *streamError) Unwrap() error { return e.err }

// report writes err to stderr with what to do about it and returns the
// exit code.
func (a *app) report(cmd *cobra.Command, err error) int {
	var (
		ue   *usageError
		ce   *connectError
		se   *streamError
		apiE *schemas.Error
	)
	// A refused publish or subscription cancelled the run: that is the
	// error, whatever the command made of the cancellation.
	if a.runCtx != nil {
		var denied *schemas.Error
		if errors.As(context.Cause(a.runCtx), &denied) {
			err = denied
		}
	}
	w := a.stderr
	path := "busctl"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	switch {
	case errors.As(err, &ue) || !a.running:
		fmt.Fprintf(w, "error: %v\n", err)
		fmt.Fprintf(w, "run '%s --help' for usage\n", path)
		return ExitUsage
	case errors.As(err, &apiE):
		fmt.Fprintf(w, "error: %s\n", apiErrorText(apiE))
		if c := errorChain(apiE); c != nil {
			_ = printChainLines(w, []schemas.ChainRecord{*c}, false)
		}
		if h := a.hintFor(apiE); h != "" {
			fmt.Fprintf(w, "hint: %s\n", h)
		}
		return ExitError
	case errors.As(err, &ce):
		fmt.Fprintf(w, "error: %v\n", err)
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			if a.natsContext != "" && a.creds == "" && os.Getenv("NATS_CREDS") == "" {
				fmt.Fprintf(w, "hint: the bus refused the credentials of %s: `nats context info %s` shows them; pass --creds FILE, or another --context", a.credsFrom, a.natsContext)
				if a.contextSelected {
					fmt.Fprint(w, " (`nats context unselect` stops busctl from using it)")
				}
				fmt.Fprintln(w)
				return ExitError
			}
			fmt.Fprintf(w, "hint: the bus refused these credentials (%s): pass --creds FILE or set $NATS_CREDS; with make run the admin's are in data/creds/admin.creds, which busctl finds when run from the checkout\n", a.credsFrom)
			return ExitError
		}
		var unknownCA x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		switch {
		case errors.As(err, &unknownCA):
			fmt.Fprintf(w, "hint: the server's TLS certificate is signed by a CA busctl does not know: pass it with --tlsca FILE (or $NATS_CA)\n")
			return ExitError
		case errors.As(err, &hostErr):
			fmt.Fprintf(w, "hint: the server's TLS certificate is not for this address: use the host name it was issued for in --server\n")
			return ExitError
		case errors.Is(err, nats.ErrSecureConnRequired):
			fmt.Fprintf(w, "hint: the server requires TLS: use a tls:// URL with --tlsca FILE (or $NATS_CA) when its CA is private\n")
			return ExitError
		}
		fmt.Fprintf(w, "hint: %s\n", hintStartBroker)
		return ExitError
	case errors.As(err, &se):
		fmt.Fprintf(w, "error: %v\n", err)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			fmt.Fprintf(w, "hint: the broker creates stream %s when it starts: %s\n", se.stream, hintStartBroker)
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			fmt.Fprintf(w, "hint: this NATS server (or account) has no JetStream: %s\n", hintStartBroker)
		case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			fmt.Fprintf(w, "hint: JetStream did not answer within --timeout %s: raise --timeout or check the NATS server\n", a.timeout)
		}
		return ExitError
	default:
		fmt.Fprintf(w, "error: %v\n", err)
		return ExitError
	}
}

// hintFor says what to do about an API error, in busctl's own words: the
// running command's hint first, then one about the hook chain that stopped
// the operation, else one from the error's code and structured details.
// Hints never come from the message text.
func (a *app) hintFor(e *schemas.Error) string {
	if a.hint != nil {
		if h := a.hint(e); h != "" {
			return h
		}
	}
	if c := errorChain(e); c != nil {
		return chainHint(e, c)
	}
	switch e.Code {
	case schemas.CodeNoResponders:
		return a.noRespondersHint()
	case schemas.CodeTimeout:
		return fmt.Sprintf("nothing answered within --timeout %s: raise it (--timeout 30s) or look for STALE or ERROR plugins with `busctl plugins ls`", a.timeout)
	case schemas.CodeNotFound:
		if detailString(e, schemas.DetailKind) == "consumer" {
			if c := detailString(e, schemas.DetailName); c != "" {
				return fmt.Sprintf("its plugin is no longer registered or consumes no events (`busctl plugins ls`): remove its dead letters with `busctl dlq purge --consumer %s`", c)
			}
		}
		return notFoundHint(detailString(e, schemas.DetailKind))
	case schemas.CodeMissingParam:
		p := detailString(e, schemas.DetailParam)
		switch {
		case p == "":
		case detailString(e, schemas.DetailMachine) != "":
			m := detailString(e, schemas.DetailMachine)
			return fmt.Sprintf("pass it with --param %s=VALUE, or keep it on the machine for later calls: `busctl machine set-param %s %s VALUE`", p, m, p)
		case detailString(e, schemas.DetailPlugin) != "":
			return fmt.Sprintf("set it with `busctl plugins config %s --set %s=VALUE`", detailString(e, schemas.DetailPlugin), p)
		}
	case schemas.CodeUnknownAction:
		return "`busctl plugins ls` shows the commands ACTIVE plugins offer (ACTIONS column) and their state"
	case schemas.CodeAmbiguousAction:
		if c := detailList(e, schemas.DetailPlugins); c != "" {
			return "pick one with --plugin (" + c + ")"
		}
		return "pick one with --plugin NAME"
	case schemas.CodeConflict:
		if running, _ := e.Details[schemas.DetailRunning].(bool); running {
			return "stop its instances first (`busctl plugins disable NAME --host HOST` with hostd), or pass --force"
		}
	case schemas.CodeNotActive:
		if e.Plugin != "" {
			return fmt.Sprintf("`busctl plugins get %s` shows its state and last error", e.Plugin)
		}
		return "`busctl plugins ls` shows each plugin's state and last error"
	case schemas.CodePluginError:
		if e.Plugin != "" {
			return fmt.Sprintf("plugin %s failed the request: see its logs", e.Plugin)
		}
	case schemas.CodeRejected:
		if e.Plugin != "" {
			return fmt.Sprintf("plugin %s refused the operation for the reason above: `busctl hooks ls` shows the hook chains", e.Plugin)
		}
		return "a hook refused the operation for the reason above: `busctl hooks ls` shows the hook chains"
	case schemas.CodeForbidden:
		if e.Plugin == "" && len(e.Details) == 0 { // refused by the NATS server
			h := "busctl connected without credentials"
			if a.credsFrom != "none" {
				h = "busctl connected with " + a.credsFrom
			}
			if a.prefix != wire.DefaultPrefix {
				h += fmt.Sprintf("; credentials are for one bus and its prefix, and busctl used --prefix %s (the default is %s): drop --prefix if the bus runs with the default", a.prefix, wire.DefaultPrefix)
			}
			if !strings.HasPrefix(a.credsFrom, "the local admin's") {
				h += "; an admin's credentials (data/creds/admin.creds with make run) can do everything busctl does"
			}
			return h
		}
	case schemas.CodeUnavailable:
		if keys := detailList(e, schemas.DetailPublicKeys); keys != "" {
			return "with nsc, for each key: `nsc revocations add-user --account ACCOUNT --user-public-key KEY`, then `nsc push`; keys: " + keys
		}
	case schemas.CodeTooLarge:
		return "the request is over the size limit: send less data"
	case schemas.CodeInternal:
		return "this is a plugbus bug or an outage: see the broker's logs"
	}
	return ""
}

// notFoundHint points at the command that lists objects of a kind.
func notFoundHint(kind string) string {
	switch kind {
	case "plugin":
		return "`busctl plugins ls` lists the registered plugins"
	case "job":
		return "`busctl job ls` lists the jobs and their versions"
	case "machine":
		return "`busctl machine ls` lists the machines; `busctl machine set-param` creates one"
	case "alert":
		return "`busctl events tail --type io.plugbus.alert.v1.fired` shows recent alerts"
	case "host":
		return "`busctl hosts ls` lists the hosts"
	case "action":
		return "`busctl actions ls` lists the recent actions"
	case "dead_letter":
		return "`busctl dlq ls` lists the dead letters"
	case "consumer":
		return "its plugin is no longer registered or consumes no events (`busctl plugins ls`): remove its dead letters with `busctl dlq purge --consumer CONSUMER`"
	case "event":
		return "`busctl events tail` shows the latest events with their ids"
	case "chain":
		return "`busctl chains ls` lists the chain runs the journal keeps (the broker's --chain-retention, 1h by default)"
	case "stream":
		return "the broker creates the bus's streams when it starts: " + hintStartBroker
	}
	return ""
}

// detailString returns details[key] of an error when it is a string.
func detailString(e *schemas.Error, key string) string {
	s, _ := e.Details[key].(string)
	return s
}

// noRespondersHint says what to do when nothing answers on the broker API:
// the broker is not running, busctl talks to another NATS server, or the
// broker uses another subject prefix than busctl's --prefix.
func (a *app) noRespondersHint() string {
	// The message already asks whether the broker is running.
	const start = "start the broker with `make run`, or point --server (or $NATS_URL) at the bus's NATS server"
	if a.prefix == wire.DefaultPrefix {
		return start + "; a broker started with --prefix P needs the same --prefix P here"
	}
	return fmt.Sprintf("busctl used --prefix %s (the default is %s): if the broker runs with the default prefix, "+
		"drop --prefix (or pass the broker's); if it is not running, %s", a.prefix, wire.DefaultPrefix, start)
}

// apiErrorText is an API error as busctl shows it: "code: message", and the
// plugin it came from when it names one (the field is in -o json output).
func apiErrorText(e *schemas.Error) string {
	s := e.Code + ": " + e.Message
	if e.Plugin != "" {
		s += " (plugin " + e.Plugin + ")"
	}
	return s
}

// detailList shows details[key] of an error as a sorted, comma-separated
// list.
func detailList(e *schemas.Error, key string) string {
	v, ok := e.Details[key]
	if !ok {
		return ""
	}
	var names []string
	switch list := v.(type) {
	case []any:
		for _, x := range list {
			names = append(names, fmt.Sprint(x))
		}
	case []string:
		names = list
	default:
		return fmt.Sprint(v)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
