package busctl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
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
		fmt.Fprintf(w, "error: %s\n", apiE.Error())
		if c := errorChain(apiE); c != nil {
			_ = printChainLines(w, []schemas.ChainRecord{*c}, false)
		}
		if h := a.hintFor(apiE); h != "" {
			fmt.Fprintf(w, "hint: %s\n", h)
		}
		return ExitError
	case errors.As(err, &ce):
		fmt.Fprintf(w, "error: %v\n", err)
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

// hintFor says what to do about an API error: the running command's own
// hint first, then one about the hook chain that stopped the operation
// (details.chain), else one by code.
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
		return hintStartBroker
	case schemas.CodeTimeout:
		return fmt.Sprintf("nothing answered within --timeout %s: raise it (--timeout 30s) or look for STALE or ERROR plugins with `busctl plugins ls`", a.timeout)
	case schemas.CodeMissingParam:
		if e.Field != "" {
			return fmt.Sprintf("set %s and retry", paramName(e.Field))
		}
	case schemas.CodeUnknownAction:
		return "`busctl plugins ls` shows the commands ACTIVE plugins offer (ACTIONS column)"
	case schemas.CodeAmbiguousAction:
		if c := candidates(e); c != "" {
			return "several plugins offer this command: pick one with --plugin (" + c + ")"
		}
		return "several plugins offer this command: pick one with --plugin NAME"
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
	case schemas.CodeTooLarge:
		return "the request is over the NATS max payload: send less data"
	case schemas.CodeInternal:
		return "this is a plugbus bug or an outage: see the broker's logs"
	}
	return ""
}

// paramName strips the "params." or "config." prefix of an error field.
func paramName(field string) string {
	for _, p := range []string{"params.", "config.", "set."} {
		if strings.HasPrefix(field, p) {
			return strings.TrimPrefix(field, p)
		}
	}
	return field
}

// candidates lists the plugins of an ambiguous_action error's details.
func candidates(e *schemas.Error) string {
	if c := detailList(e, "plugins"); c != "" {
		return c
	}
	return detailList(e, "candidates")
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
