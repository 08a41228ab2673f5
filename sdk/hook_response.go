package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/plugbus/plugbus/schemas"
)

// Continue lets the chain go on unchanged. It answers any hook point.
func Continue() *schemas.HookResponse {
	return &schemas.HookResponse{Outcome: schemas.HookContinue}
}

// ContinueWith lets the chain go on with patch applied to the payload that
// the next steps and the core see (gate hooks: job.pre_deploy,
// job.pre_delete, machine.pre_action, alert.pre_notify). patch is a JSON
// merge patch (RFC 7396): a JSON object whose keys replace the payload's,
// whose nested objects merge, and whose null values remove keys — for
// example map[string]any{"labels": map[string]any{"checked": "yes", "tmp": nil}}.
// It may be a map, a struct, a json.RawMessage or []byte holding the JSON. A
// nil patch is [Continue]. ContinueWith returns an error when patch does not
// encode to a JSON object, so a handler can end with
// `return sdk.ContinueWith(patch)`.
func ContinueWith(patch any) (*schemas.HookResponse, error) {
	var raw []byte
	switch v := patch.(type) {
	case nil:
		return Continue(), nil
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		b, err := json.Marshal(patch)
		if err != nil {
			return nil, fmt.Errorf("encode hook patch: %w", err)
		}
		raw = b
	}
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return nil, fmt.Errorf("hook patch is not valid JSON: %.80q", raw)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("hook patch must be a JSON object (a merge patch), got %.80s", raw)
	}
	return &schemas.HookResponse{Outcome: schemas.HookContinue, Patch: json.RawMessage(bytes.Clone(raw))}, nil
}

// Reject stops a gate chain and refuses the operation (for alert.pre_notify:
// suppresses the alert). The caller gets the error code "rejected" with
// reason as the message, so say what is wrong and how to fix it. Only gate
// hooks may reject: a rejection from job.runtime_env or an injection hook is
// answered as an error.
func Reject(reason string) *schemas.HookResponse {
	return &schemas.HookResponse{Outcome: schemas.HookReject, Reason: reason}
}

// RejectWithCode is [Reject] with an error code of your own instead of
// "rejected" (lower-case letters, digits and '_', such as
// "policy_violation"), for callers that act on the code.
func RejectWithCode(code, reason string) *schemas.HookResponse {
	return &schemas.HookResponse{Outcome: schemas.HookReject, Reason: reason, Code: code}
}

// Env answers job.runtime_env with env vars to add to the job (keys are
// shell variable names). A nil or empty map adds nothing.
func Env(env map[string]string) *schemas.HookResponse {
	return &schemas.HookResponse{Outcome: schemas.HookContinue, Env: maps.Clone(env)}
}

// Fragment answers job.dockerfile_injection or job.bootstrap_injection with
// text to inject. An empty fragment injects nothing.
func Fragment(text string) *schemas.HookResponse {
	return &schemas.HookResponse{Outcome: schemas.HookContinue, Fragment: text}
}
