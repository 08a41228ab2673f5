package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validate checks doc, a JSON document, against the embedded schema at
// schemaPath (one of the path constants such as [APIRegisterRequest], or the
// schema's $id). An empty (or all-whitespace) doc is read as {}.
//
// It returns nil when doc is valid, and otherwise an *[Error]:
//   - [CodeBadRequest] when doc is not valid JSON or not a JSON object;
//   - [CodeInvalidField] when doc fails its schema. Field names the offending
//     field as a dotted path ("manifest.events.max_deliver",
//     "manifest.hooks[0].failure_policy"; a missing required field is named
//     itself, an unknown field too); Message says what is wrong. When several
//     fields are wrong, the deepest is reported and Details["errors"] lists
//     them all as {"field", "message"} objects.
//   - [CodeInternal] when schemaPath names no embedded schema.
//
// Schemas are compiled once, on first use; Validate is safe for concurrent use.
func Validate(schemaPath string, doc []byte) error {
	sch, err := compiled(schemaPath)
	if err != nil {
		return err
	}
	inst, perr := parseDoc(doc)
	if perr != nil {
		return perr
	}
	return sch.check(inst, "", true)
}

// ValidateValue marshals v to JSON and validates it like [Validate].
func ValidateValue(schemaPath string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("cannot encode %T as JSON: %v", v, err)}
	}
	return Validate(schemaPath, b)
}

// Decode validates doc against the schema at schemaPath like [Validate] and,
// when it is valid, unmarshals it into v. This is what the broker and the SDK
// call on every request and reply they receive. Errors are *[Error] values.
func Decode(schemaPath string, doc []byte, v any) error {
	if err := Validate(schemaPath, doc); err != nil {
		return err
	}
	if len(bytes.TrimSpace(doc)) == 0 {
		doc = []byte("{}")
	}
	if err := json.Unmarshal(doc, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &Error{Code: CodeInvalidField, Field: te.Field,
				Message: fmt.Sprintf("field %q: cannot be read as %s", te.Field, te.Type)}
		}
		return &Error{Code: CodeInvalidField, Field: rootField,
			Message: fmt.Sprintf("the body cannot be read as %T: %v", v, err)}
	}
	return nil
}

// rootField names the document itself when no field is more specific.
const rootField = "(root)"

// parseDoc parses a JSON document the way jsonschema wants it (numbers as
// json.Number), reading an empty document as {}.
func parseDoc(doc []byte) (any, *Error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return map[string]any{}, nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: "the body is not valid JSON: " + err.Error()}
	}
	return inst, nil
}

// registry holds every embedded schema, compiled.
type registry struct {
	docs     map[string]any     // raw documents by $id
	compiled map[string]*schema // by path
	err      error
}

var (
	regOnce sync.Once
	reg     *registry
)

func loadRegistry() *registry {
	regOnce.Do(func() { reg = buildRegistry() })
	return reg
}

func buildRegistry() *registry {
	r := &registry{docs: map[string]any{}, compiled: map[string]*schema{}}
	c := newCompiler(nil)
	paths := SchemaPaths()
	for _, p := range paths {
		b, err := fs.ReadFile(schemaFiles, p)
		if err != nil {
			r.err = err
			return r
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			r.err = fmt.Errorf("schema %s is not valid JSON: %w", p, err)
			return r
		}
		obj, _ := doc.(map[string]any)
		if id, _ := obj["$id"].(string); id != SchemaID(p) {
			r.err = fmt.Errorf("schema %s has $id %q, want %q", p, id, SchemaID(p))
			return r
		}
		r.docs[SchemaID(p)] = doc
		if err := c.AddResource(SchemaID(p), doc); err != nil {
			r.err = fmt.Errorf("schema %s: %w", p, err)
			return r
		}
	}
	for _, p := range paths {
		sch, err := c.Compile(SchemaID(p))
		if err != nil {
			r.err = fmt.Errorf("schema %s does not compile: %w", p, err)
			return r
		}
		r.compiled[p] = &schema{sch: sch, docs: r.docs}
	}
	return r
}

// compiled returns the compiled schema at path (or $id).
func compiled(schemaPath string) (*schema, *Error) {
	r := loadRegistry()
	if r.err != nil {
		return nil, &Error{Code: CodeInternal, Message: "embedded schemas are broken: " + r.err.Error()}
	}
	sch, ok := r.compiled[strings.TrimPrefix(schemaPath, SchemaBase)]
	if !ok {
		return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("unknown schema %q", schemaPath)}
	}
	return sch, nil
}

// newCompiler returns a 2020-12 compiler that asserts formats and loads no
// $ref from files or the network: only the documents in docs (the embedded
// schemas, for plugin config schemas) can be referenced besides the ones
// added as resources.
func newCompiler(docs map[string]any) *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(embeddedLoader(docs))
	return c
}

// embeddedLoader serves only the documents it holds.
type embeddedLoader map[string]any

func (l embeddedLoader) Load(url string) (any, error) {
	if doc, ok := l[url]; ok {
		return doc, nil
	}
	return nil, fmt.Errorf("$ref %q is not allowed: only plugbus schemas (%s...) can be referenced", url, SchemaBase)
}

// schema is a compiled schema plus the raw documents its error messages
// look keywords up in.
type schema struct {
	sch  *jsonschema.Schema
	docs map[string]any
	// secret are top-level properties whose values errors never show.
	secret map[string]bool
}

// check validates inst (already parsed) and converts a failure to an *Error.
// prefix is prepended to every field ("config"); document says whether inst
// is a whole request body (a non-object body is then a bad request).
func (s *schema) check(inst any, prefix string, document bool) error {
	err := s.sch.Validate(inst)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return &Error{Code: CodeInternal, Message: "validation failed: " + err.Error()}
	}
	return convert(verr, inst, prefix, document, s.docs, s.secret)
}
