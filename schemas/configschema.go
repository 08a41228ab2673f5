package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// configSchemaURL is the base URL a plugin's config schema is compiled under
// (a config schema may set its own $id).
const configSchemaURL = "urn:plugbus:config-schema"

// Field names used by config schema errors.
const (
	fieldConfigSchema = "manifest.config_schema"
	fieldConfig       = "config"
)

// ConfigSchema is a plugin's compiled config schema (Manifest.ConfigSchema).
// A nil or empty ConfigSchema accepts every config. It is safe for
// concurrent use.
type ConfigSchema struct {
	s *schema
}

// CompileConfigSchema compiles a plugin's config schema, a JSON Schema
// (2020-12 unless its $schema says otherwise). Empty raw, or null, gives a
// schema that accepts every config. The schema may $ref the embedded plugbus
// schemas (by $id) but nothing else: no files, no network.
//
// A schema that is not valid JSON, not an object or not a valid JSON Schema
// gives an *[Error] with Code [CodeInvalidField] and Field
// "manifest.config_schema".
func CompileConfigSchema(raw json.RawMessage) (*ConfigSchema, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return &ConfigSchema{}, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(trimmed))
	if err != nil {
		return nil, configSchemaError("is not valid JSON: %v", err)
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, configSchemaError("must be a JSON Schema object, got %s", jsonType(doc))
	}
	r := loadRegistry()
	if r.err != nil {
		return nil, &Error{Code: CodeInternal, Message: "embedded schemas are broken: " + r.err.Error()}
	}
	docs := make(map[string]any, len(r.docs)+1)
	for id, d := range r.docs {
		docs[id] = d
	}
	docs[configSchemaURL] = doc

	c := newCompiler(r.docs)
	if err := c.AddResource(configSchemaURL, doc); err != nil {
		return nil, configSchemaError("cannot be used: %v", err)
	}
	sch, err := c.Compile(configSchemaURL)
	if err != nil {
		return nil, configSchemaError("is not a valid JSON Schema: %s", compileMessage(err, doc))
	}
	return &ConfigSchema{s: &schema{sch: sch, docs: docs, secret: secretProperties(doc)}}, nil
}

// Redacted is what a secret config value is shown as.
const Redacted = "<redacted>"

// secretProperties returns the top-level properties a config schema marks
// "writeOnly": true: secrets (tokens, passwords, webhook URLs with keys in
// them) that the plugin reads but nobody else sees.
func secretProperties(doc any) map[string]bool {
	m, _ := doc.(map[string]any)
	props, _ := m["properties"].(map[string]any)
	var out map[string]bool
	for name, p := range props {
		if pm, ok := p.(map[string]any); ok && pm["writeOnly"] == true {
			if out == nil {
				out = map[string]bool{}
			}
			out[name] = true
		}
	}
	return out
}

// SecretKeys returns, sorted, the config keys the schema marks secret
// ("writeOnly": true on a top-level property).
func (c *ConfigSchema) SecretKeys() []string {
	if c == nil || c.s == nil {
		return nil
	}
	keys := make([]string, 0, len(c.s.secret))
	for k := range c.s.secret {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Redact returns config with the value of every secret key replaced by
// [Redacted]; config itself is not changed. Without secrets it returns
// config as it is.
func (c *ConfigSchema) Redact(config map[string]any) map[string]any {
	if c == nil || c.s == nil || len(c.s.secret) == 0 || len(config) == 0 {
		return config
	}
	out := make(map[string]any, len(config))
	for k, v := range config {
		if c.s.secret[k] {
			v = Redacted
		}
		out[k] = v
	}
	return out
}

// Validate checks a plugin config against the schema. A nil config is read
// as {}. A failure is an *[Error] with Code [CodeInvalidField] and Field
// "config.<key>" (or "config" for the whole object).
func (c *ConfigSchema) Validate(config map[string]any) error {
	if c == nil || c.s == nil {
		return nil
	}
	if config == nil {
		config = map[string]any{}
	}
	b, err := json.Marshal(config)
	if err != nil {
		return &Error{Code: CodeInvalidField, Field: fieldConfig,
			Message: fmt.Sprintf("field %q: cannot be encoded as JSON: %v", fieldConfig, err)}
	}
	inst, perr := parseDoc(b)
	if perr != nil {
		return perr
	}
	return c.s.check(inst, fieldConfig, false)
}

func configSchemaError(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidField, Field: fieldConfigSchema,
		Message: fmt.Sprintf("field %q: ", fieldConfigSchema) + fmt.Sprintf(format, args...)}
}

// compileMessage renders a compile error in one line; a schema that fails
// the metaschema names the offending keyword location.
func compileMessage(err error, doc any) string {
	var sve *jsonschema.SchemaValidationError
	var verr *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &verr) {
		e := convert(verr, doc, "", false, nil, nil)
		return fmt.Sprintf("at %q: %s", e.Field, strings.TrimPrefix(e.Message, fmt.Sprintf("field %q: ", e.Field)))
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
