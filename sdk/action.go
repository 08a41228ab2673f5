package sdk

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/plugbus/plugbus/schemas"
)

// ActionHandler performs one action command. Its result is encoded as JSON
// and returned to the caller (a json.RawMessage is passed through as is).
// Its error reaches the caller too: a *schemas.Error keeps its code (use
// [MissingParam] and [InvalidParam], or schemas.Errorf), any other error
// becomes plugin_error with the error's message.
type ActionHandler func(ctx context.Context, a *Action) (any, error)

// Action is an action request routed to this plugin. Params holds the
// call's params with the action's optional params filled in from the object
// (the machine) by the broker, and required params guaranteed present. The
// getters convert params and report a wrong type as an invalid_field error
// naming the param, ready to return from the handler.
type Action struct {
	schemas.ActionRequest
}

// Param returns a param's raw value and whether it is set (not null).
func (a *Action) Param(key string) (any, bool) {
	v, ok := a.Params[key]
	return v, ok && v != nil
}

// String returns a string param, def when it is not set.
func (a *Action) String(key, def string) (string, error) {
	v, ok, err := toString(a.Params[key])
	return pick(v, def, ok, err, key)
}

// Int returns an integer param, def when it is not set. A number with a
// fraction or a string that is not an integer is an invalid_field error.
func (a *Action) Int(key string, def int) (int, error) {
	v, ok, err := toInt(a.Params[key])
	return pick(v, def, ok, err, key)
}

// Float returns a number param, def when it is not set.
func (a *Action) Float(key string, def float64) (float64, error) {
	v, ok, err := toFloat(a.Params[key])
	return pick(v, def, ok, err, key)
}

// Bool returns a boolean param, def when it is not set.
func (a *Action) Bool(key string, def bool) (bool, error) {
	v, ok, err := toBool(a.Params[key])
	return pick(v, def, ok, err, key)
}

// Strings returns a list-of-strings param (a JSON array of strings or a
// comma-separated string), nil when it is not set.
func (a *Action) Strings(key string) ([]string, error) {
	v, ok, err := toStrings(a.Params[key])
	return pick(v, nil, ok, err, key)
}

// Decode decodes a param into v (a pointer). A missing param leaves v as it
// is and returns nil.
func (a *Action) Decode(key string, v any) error {
	raw, ok := a.Param(key)
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return InvalidParam(key, "%v", err)
	}
	return nil
}

func pick[T any](v, def T, ok bool, err error, key string) (T, error) {
	if err != nil {
		return def, InvalidParam(key, "%v", err)
	}
	if !ok {
		return def, nil
	}
	return v, nil
}

// MissingParam returns the missing_param error for an action param, the
// error an action handler returns when a param it needs is absent.
func MissingParam(key string) *schemas.Error {
	return schemas.Errorf(schemas.CodeMissingParam, "params."+key, "param %q is required", key)
}

// InvalidParam returns the invalid_field error for an action param with a
// wrong value.
func InvalidParam(key, format string, args ...any) *schemas.Error {
	return schemas.Errorf(schemas.CodeInvalidField, "params."+key, "param %q: %s", key, fmt.Sprintf(format, args...))
}
