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
		if h := a.hintFor(apiE); h != "" && !repeatsMessage(h, apiE.Message) {
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
		return a.noRespondersHint()
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

// apiErrorText is an API error as busctl shows it: "code: message", then
// the field and the plugin unless the message already names them.
func apiErrorText(e *schemas.Error) string {
	s := e.Code + ": " + e.Message
	if e.Field != "" && !namesField(e.Message, e.Field) {
		s += fmt.Sprintf(" (field %s)", e.Field)
	}
	if e.Plugin != "" && !strings.Contains(e.Message, "plugin "+e.Plugin) {
		s += fmt.Sprintf(" (plugin %s)", e.Plugin)
	}
	return s
}

// namesField says whether an error message already tells which field it is
// about: it mentions the field (or the param or config key the field
// stands for, or its last part), or the field is the name or id of the
// object the request is about (or the action's command), which every such
// message names.
func namesField(msg, field string) bool {
	switch field {
	case "name", "id", "machine", "command":
		return true
	}
	if strings.Contains(msg, field) {
		return true
	}
	leaf := paramName(field)
	if i := strings.LastIndexByte(leaf, '.'); i >= 0 && !strings.Contains(leaf, "/") {
		leaf = leaf[i+1:]
	}
	return containsWord(msg, leaf)
}

// containsWord says whether w occurs in s with no letter, digit, '_', '/'
// or '-' right before or after it.
func containsWord(s, w string) bool {
	if w == "" {
		return false
	}
	wordByte := func(c byte) bool {
		return c == '_' || c == '/' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !wordByte(s[start-1])) && (end == len(s) || !wordByte(s[end])) {
			return true
		}
		i = start + 1
	}
}

// repeatsMessage says whether a hint only repeats advice the error message
// already gives: every command it quotes in backticks is in the message
// already (up to the placeholder of its value: `--set url=...` matches
// "--set url=VALUE"), or, for a hint that quotes no command, every --flag
// it names is.
func repeatsMessage(hint, msg string) bool {
	parts := strings.Split(hint, "`")
	if len(parts) < 3 {
		flags := 0
		for _, w := range strings.FieldsFunc(hint, func(r rune) bool { return r == ' ' || r == '(' || r == ')' || r == ',' || r == ':' }) {
			if !strings.HasPrefix(w, "--") || len(w) < 3 {
				continue
			}
			if j := strings.IndexByte(w, '='); j >= 0 {
				w = w[:j]
			}
			if !containsWord(msg, w) {
				return false
			}
			flags++
		}
		return flags > 0
	}
	for i := 1; i < len(parts)-1; i += 2 {
		cmd := parts[i]
		if j := strings.IndexByte(cmd, '='); j >= 0 {
			cmd = cmd[:j+1]
		}
		cmd = strings.TrimSuffix(strings.TrimSuffix(cmd, " VALUE"), "...")
		if !strings.Contains(msg, cmd) {
			return false
		}
	}
	return true
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
