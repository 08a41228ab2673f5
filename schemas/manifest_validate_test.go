package schemas_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(m *schemas.Manifest)
		field   string // "" = valid
		message string
	}{
		{"valid", func(m *schemas.Manifest) {}, "", ""},
		{"no config schema", func(m *schemas.Manifest) { m.ConfigSchema = nil }, "", ""},
		{"hook timeout at the limit", func(m *schemas.Manifest) { m.Hooks[0].Timeout = schemas.Duration(schemas.MaxHookTimeout) }, "", ""},
		{"bad name", func(m *schemas.Manifest) { m.Name = "-x" }, "manifest.name", "must be lower-case letters, digits and dashes"},
		{"reserved name", func(m *schemas.Manifest) { m.Name = "broker" }, "manifest.name", "is reserved for the core"},
		{"name like an event version", func(m *schemas.Manifest) { m.Name = "v2" }, "manifest.name", "is reserved for the core"},
		{"bad failure policy", func(m *schemas.Manifest) { m.Hooks[1].FailurePolicy = "Fail" }, "manifest.hooks[1].failure_policy", "must be one of"},
		{"negative ack wait", func(m *schemas.Manifest) { m.Events.AckWait = schemas.Duration(-time.Second) }, "manifest.events.ack_wait", "must match pattern"},
		{"hook timeout too long", func(m *schemas.Manifest) { m.Hooks[0].Timeout = schemas.Duration(31 * time.Second) }, "manifest.hooks[0].timeout", "must be at most 30s (got 31s)"},
		{"unknown hook point", func(m *schemas.Manifest) { m.Hooks[1].Hook = "job.post_deploy" }, "manifest.hooks[1].hook",
			`must be one of "job.pre_deploy", "job.runtime_env", "job.dockerfile_injection", "job.bootstrap_injection", "job.pre_delete", "machine.pre_action", "alert.pre_notify" (got "job.post_deploy")`},
		{"every hook point", func(m *schemas.Manifest) {
			m.Hooks = nil
			for _, h := range schemas.HookPoints {
				m.Hooks = append(m.Hooks, schemas.HookSpec{Hook: h})
			}
		}, "", ""},
		{"duplicate hook", func(m *schemas.Manifest) { m.Hooks[1].Hook = m.Hooks[0].Hook }, "manifest.hooks[1].hook", `declares hook point "job.pre_deploy" again`},
		{"duplicate action", func(m *schemas.Manifest) { m.Actions[1] = schemas.ActionSpec{Command: "increment", Model: "machines"} }, "manifest.actions[1].command", "again"},
		{"same command on another model", func(m *schemas.Manifest) { m.Actions[1] = schemas.ActionSpec{Command: "increment"} }, "", ""},
		{"config schema not JSON", func(m *schemas.Manifest) { m.ConfigSchema = json.RawMessage(`{`) }, "manifest.config_schema", "is not valid JSON"},
		{"config schema invalid", func(m *schemas.Manifest) { m.ConfigSchema = json.RawMessage(`{"type":"nope"}`) }, "manifest.config_schema", "is not a valid JSON Schema"},
		{"config schema not an object", func(m *schemas.Manifest) { m.ConfigSchema = json.RawMessage(`true`) }, "manifest.config_schema", "must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleManifest()
			tt.edit(&m)
			err := m.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			e := asError(t, err)
			if e.Code != schemas.CodeInvalidField || e.Field != tt.field || !strings.Contains(e.Message, tt.message) {
				t.Fatalf("got %s %q %q, want invalid_field %q containing %q", e.Code, e.Field, e.Message, tt.field, tt.message)
			}
		})
	}
}
