package schemas_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

const incrementerConfigSchema = `{
  "type": "object",
  "required": ["endpoint"],
  "properties": {
    "endpoint": {"type": "string", "format": "uri"},
    "step": {"type": "integer", "minimum": 1},
    "hosts": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "mode": {"enum": ["fast", "safe"]},
    "timeout": {"$ref": "https://plugbus.io/schemas/api/v1/definitions.json#/$defs/duration"},
    "tls": {"type": "object", "properties": {"ca": {"type": "string"}}, "additionalProperties": false}
  }
}`

func TestConfigSchemaValidate(t *testing.T) {
	cs, err := schemas.CompileConfigSchema(json.RawMessage(incrementerConfigSchema))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		config  map[string]any
		field   string // "" = valid
		message string
	}{
		{"valid", map[string]any{"endpoint": "https://db.example:5432/x", "step": 2, "hosts": []string{"a", "b"},
			"mode": "safe", "timeout": "1m", "tls": map[string]any{"ca": "pem"}, "extra": true}, "", ""},
		{"minimal", map[string]any{"endpoint": "nats://localhost:4222"}, "", ""},
		{"nil config misses required", nil, "config.endpoint", `field "config.endpoint": is required`},
		{"too small", map[string]any{"endpoint": "https://x", "step": 0}, "config.step", "must be at least 1 (got 0)"},
		{"float for an integer", map[string]any{"endpoint": "https://x", "step": 1.5}, "config.step", "must be an integer"},
		{"bad item", map[string]any{"endpoint": "https://x", "hosts": []any{"a", ""}}, "config.hosts[1]", "must not be empty"},
		{"bad enum", map[string]any{"endpoint": "https://x", "mode": "slow"}, "config.mode", `must be one of "fast", "safe" (got "slow")`},
		{"plugbus definition", map[string]any{"endpoint": "https://x", "timeout": "soon"}, "config.timeout", "must match pattern"},
		{"nested unknown key", map[string]any{"endpoint": "https://x", "tls": map[string]any{"cert": "x"}}, "config.tls.cert", "is not a known field (known fields: ca)"},
		{"bad format", map[string]any{"endpoint": "not a uri"}, "config.endpoint", "must be a valid absolute URI"},
		{"unencodable", map[string]any{"endpoint": "https://x", "f": func() {}}, "config", "cannot be encoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cs.Validate(tt.config)
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

func TestCompileConfigSchema(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		message string // "" = compiles
	}{
		{"empty", ``, ""},
		{"null", `null`, ""},
		{"empty object", `{}`, ""},
		{"draft 7", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}`, ""},
		{"own $id", `{"$id":"https://example.com/incrementer/config.json","type":"object"}`, ""},
		{"not JSON", `{"type":`, "is not valid JSON"},
		{"not an object", `["type"]`, "must be a JSON Schema object, got an array"},
		{"bad type keyword", `{"type":"nope"}`, `is not a valid JSON Schema: at "type"`},
		{"bad nested keyword", `{"properties":{"step":{"minimum":"one"}}}`, `at "properties.step.minimum": must be a number`},
		{"bad regex", `{"pattern":"(["}`, "is not a valid JSON Schema"},
		{"file ref", `{"$ref":"file:///etc/passwd"}`, "is not allowed: only plugbus schemas"},
		{"remote ref", `{"properties":{"a":{"$ref":"https://example.com/s.json"}}}`, "is not allowed"},
		{"missing plugbus ref", `{"$ref":"https://plugbus.io/schemas/api/v1/nope.json"}`, "is not allowed"},
		{"plugbus ref", `{"$ref":"https://plugbus.io/schemas/api/v1/definitions.json#/$defs/params"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := schemas.CompileConfigSchema(json.RawMessage(tt.raw))
			if tt.message == "" {
				if err != nil || cs == nil {
					t.Fatalf("CompileConfigSchema = %v, %v", cs, err)
				}
				if err := cs.Validate(map[string]any{}); err != nil {
					t.Fatalf("Validate({}) = %v", err)
				}
				return
			}
			e := asError(t, err)
			if e.Code != schemas.CodeInvalidField || e.Field != "manifest.config_schema" || !strings.Contains(e.Message, tt.message) {
				t.Fatalf("got %s %q %q, want invalid_field manifest.config_schema containing %q", e.Code, e.Field, e.Message, tt.message)
			}
			if cs != nil {
				t.Fatal("got a schema with the error")
			}
		})
	}
}

func TestNilConfigSchemaAcceptsAll(t *testing.T) {
	var cs *schemas.ConfigSchema
	if err := cs.Validate(map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	cs, err := schemas.CompileConfigSchema(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Validate(map[string]any{"x": func() {}}); err != nil {
		t.Fatal(err)
	}
}

// TestConfigSchemaPropertyNames checks the field of a propertyNames failure
// is stable (jsonschema v6.0.3 can report it under a sibling's location).
func TestConfigSchemaPropertyNames(t *testing.T) {
	cs, err := schemas.CompileConfigSchema(json.RawMessage(`{"properties":{
		"aa":{"type":"object","properties":{"inner":{"propertyNames":{"pattern":"^x"}}}},
		"bb":{"type":"object","properties":{"zzzzz":{"type":"object"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	config := map[string]any{"aa": map[string]any{"inner": map[string]any{"y": 1}}, "bb": map[string]any{"zzzzz": map[string]any{}}}
	for i := 0; i < 50; i++ {
		e := asError(t, cs.Validate(config))
		if e.Field != "config.aa.inner.y" || !strings.Contains(e.Message, "is not an allowed key: the key must match pattern ^x") {
			t.Fatalf("got %q %q", e.Field, e.Message)
		}
	}
}

// A writeOnly property is a secret: Redact hides its value and no
// validation error shows it, whatever keyword fails.
func TestConfigSchemaSecrets(t *testing.T) {
	cs, err := schemas.CompileConfigSchema(json.RawMessage(`{
  "type": "object",
  "properties": {
    "token": {"type": "string", "minLength": 12, "pattern": "^tok-", "writeOnly": true},
    "pin": {"enum": [1234, 4321], "writeOnly": true},
    "url": {"type": "string"}
  },
  "maxProperties": 2
}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.SecretKeys(); strings.Join(got, ",") != "pin,token" {
		t.Errorf("SecretKeys = %v, want [pin token]", got)
	}
	cfg := map[string]any{"token": "tok-0123456789", "url": "http://x"}
	red := cs.Redact(cfg)
	if red["token"] != schemas.Redacted || red["url"] != "http://x" || cfg["token"] != "tok-0123456789" {
		t.Errorf("Redact = %v (input now %v)", red, cfg)
	}
	for name, c := range map[string]map[string]any{
		"too short":      {"token": "tok-abc"},
		"pattern":        {"token": "xyz-0123456789abc"},
		"type":           {"token": 99887766},
		"enum":           {"pin": 98765},
		"whole document": {"token": "tok-0123456789", "url": "http://x", "pin": 1234},
	} {
		err := cs.Validate(c)
		if err == nil {
			t.Errorf("%s: accepted %v", name, c)
			continue
		}
		for _, v := range c {
			if s := strings.Trim(string(mustJSON(t, v)), `"`); strings.Contains(err.Error(), s) {
				t.Errorf("%s: the error shows the secret %s: %v", name, s, err)
			}
		}
	}
	// The value of a plain property still shows.
	if err := cs.Validate(map[string]any{"url": 5}); err == nil || !strings.Contains(err.Error(), "(got a number)") {
		t.Errorf("plain property: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
