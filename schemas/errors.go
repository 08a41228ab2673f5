package schemas

import (
	"errors"
	"fmt"
)

// Error codes carried by every plugbus error reply. They are stable: clients
// branch on them, and docs/protocol.md lists what each means.
const (
	// CodeBadRequest: the request is not valid JSON or not an object.
	CodeBadRequest = "bad_request"
	// CodeInvalidField: a field fails its schema; Field names it.
	CodeInvalidField = "invalid_field"
	// CodeMissingParam: a required param is absent; Field names it.
	CodeMissingParam = "missing_param"
	// CodeUnknownAction: no active plugin offers the command on that model.
	CodeUnknownAction = "unknown_action"
	// CodeAmbiguousAction: several plugins offer the command; name one.
	CodeAmbiguousAction = "ambiguous_action"
	// CodeNotFound: the named object (plugin, job, machine, alert) does not exist.
	CodeNotFound = "not_found"
	// CodeConflict: the request conflicts with the current state.
	CodeConflict = "conflict"
	// CodeNotActive: the plugin exists but is not ACTIVE.
	CodeNotActive = "not_active"
	// CodePluginError: the plugin answered with an error of its own.
	CodePluginError = "plugin_error"
	// CodeTimeout: a plugin or the broker did not answer in time.
	CodeTimeout = "timeout"
	// CodeNoResponders: nobody listens on the subject.
	CodeNoResponders = "no_responders"
	// CodeTooLarge: the message exceeds the size limit.
	CodeTooLarge = "too_large"
	// CodeRejected: a hook rejected the operation.
	CodeRejected = "rejected"
	// CodeInternal: an unexpected failure inside plugbus.
	CodeInternal = "internal"
	// CodeForbidden: the caller's identity may not do this.
	CodeForbidden = "forbidden"
	// CodeUnavailable: the bus cannot do this as it is set up (identities
	// on a NATS the broker has no signing key for, say).
	CodeUnavailable = "unavailable"
	// CodeCancelled: an operator cancelled the action.
	CodeCancelled = "cancelled"
)

// Keys of Error.Details. Clients phrase their own hints from them (busctl
// names its flags and commands), so the broker's messages never carry a
// user interface's words.
const (
	// DetailKind is the kind of object a not_found error is about:
	// "plugin", "job", "machine", "alert", "host".
	DetailKind = "kind"
	// DetailName names that object.
	DetailName = "name"
	// DetailParam names the missing param of a missing_param error.
	DetailParam = "param"
	// DetailPlugin names the plugin an error is about.
	DetailPlugin = "plugin"
	// DetailMachine and DetailCommand name the machine and command of an
	// action.
	DetailMachine = "machine"
	DetailCommand = "command"
	// DetailPlugins lists the candidates of an ambiguous_action error.
	DetailPlugins = "plugins"
	// DetailAvailable lists the commands ACTIVE plugins offer (unknown_action).
	DetailAvailable = "available"
	// DetailRunning is true on a conflict because an instance still runs.
	DetailRunning = "running_instance"
	// DetailAllowed lists the allowed values of an invalid_field error.
	DetailAllowed = "allowed"
	// DetailChain and DetailChains carry the hook chain run(s) of a
	// refused or failed operation.
	DetailChain  = "chain"
	DetailChains = "chains"
	// DetailPublicKeys lists NATS user public keys (a revocation the
	// broker could not apply itself).
	DetailPublicKeys = "public_keys"
	// DetailHook names the hook point of an error, DetailCycle lists the
	// plugins of a constraint cycle ("a", "b", "a") in a conflict that
	// refused a registration.
	DetailHook  = "hook"
	DetailCycle = "cycle"
)

// Codes lists every error code, in a stable order.
var Codes = []string{
	CodeBadRequest, CodeInvalidField, CodeMissingParam, CodeUnknownAction, CodeAmbiguousAction,
	CodeNotFound, CodeConflict, CodeNotActive, CodePluginError, CodeTimeout, CodeNoResponders,
	CodeTooLarge, CodeRejected, CodeInternal, CodeForbidden, CodeUnavailable, CodeCancelled,
}

// IsCode reports whether code is one of the documented error codes.
func IsCode(code string) bool {
	for _, c := range Codes {
		if c == code {
			return true
		}
	}
	return false
}

// Error is the error envelope of every plugbus reply (schema api/v1/error.json).
// It implements error; errors.Is matches two *Error values by Code, so
// errors.Is(err, schemas.ErrNotFound) works on replies decoded from the wire.
type Error struct {
	// Code is one of the Code* constants.
	Code string `json:"code"`
	// Message says what is wrong and, where it helps, what to do.
	Message string `json:"message"`
	// Field names the offending field or param, as a JSON pointer-ish path
	// ("manifest.name", "params.incrementer/touched"), when there is one.
	Field string `json:"field,omitempty"`
	// Plugin names the plugin the error came from, when it came from one.
	Plugin string `json:"plugin,omitempty"`
	// Details carries extra data, such as the candidate plugins of an
	// ambiguous action.
	Details map[string]any `json:"details,omitempty"`
}

// Sentinel errors to match with errors.Is against errors from the wire.
var (
	ErrBadRequest      = &Error{Code: CodeBadRequest}
	ErrInvalidField    = &Error{Code: CodeInvalidField}
	ErrMissingParam    = &Error{Code: CodeMissingParam}
	ErrUnknownAction   = &Error{Code: CodeUnknownAction}
	ErrAmbiguousAction = &Error{Code: CodeAmbiguousAction}
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrConflict        = &Error{Code: CodeConflict}
	ErrNotActive       = &Error{Code: CodeNotActive}
	ErrPluginError     = &Error{Code: CodePluginError}
	ErrTimeout         = &Error{Code: CodeTimeout}
	ErrNoResponders    = &Error{Code: CodeNoResponders}
	ErrTooLarge        = &Error{Code: CodeTooLarge}
	ErrRejected        = &Error{Code: CodeRejected}
	ErrInternal        = &Error{Code: CodeInternal}
	ErrForbidden       = &Error{Code: CodeForbidden}
	ErrUnavailable     = &Error{Code: CodeUnavailable}
	ErrCancelled       = &Error{Code: CodeCancelled}
)

// Error formats the error as "code: message (field F)".
func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.Field != "" {
		s += fmt.Sprintf(" (field %s)", e.Field)
	}
	if e.Plugin != "" {
		s += fmt.Sprintf(" (plugin %s)", e.Plugin)
	}
	return s
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// Errorf builds an *Error with a formatted message.
func Errorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error, wrapping any other error as CodeInternal.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
