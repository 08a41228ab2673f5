package busctl

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// parsePairs parses repeated --flag KEY=VALUE values into a map. A value
// may be empty and may contain "="; the key may not be empty, and a key
// may be given only once. Errors are usage errors naming the flag.
func parsePairs(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vals))
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageErrf("invalid --%s %q: want KEY=VALUE", flag, kv)
		}
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, usageErrf("invalid --%s %q: the key before = is empty", flag, kv)
		}
		if _, dup := m[k]; dup {
			return nil, usageErrf("invalid --%s: key %q is given twice", flag, k)
		}
		m[k] = v
	}
	return m, nil
}

// parseValue turns a command-line value into a JSON value: text that is a
// whole JSON document (number, true, false, null, "quoted", [..], {..}) is
// sent as that JSON; anything else as a string. Numbers keep their exact
// digits.
func parseValue(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return s
	}
	if _, err := dec.Token(); err != io.EOF {
		return s // trailing text: "1 2", "true story"
	}
	return v
}

// parseValues applies parseValue to every value of pairs.
func parseValues(pairs map[string]string) map[string]any {
	if len(pairs) == 0 {
		return nil
	}
	m := make(map[string]any, len(pairs))
	for k, v := range pairs {
		m[k] = parseValue(v)
	}
	return m
}

// arrayProperty reports whether property key of a JSON Schema object is
// declared with type "array" (alone or in a type list), and the declared
// type of its items when there is exactly one.
func arrayProperty(schema json.RawMessage, key string) (isArray bool, itemType string) {
	if len(bytes.TrimSpace(schema)) == 0 {
		return false, ""
	}
	var s struct {
		Properties map[string]struct {
			Type  json.RawMessage `json:"type"`
			Items *struct {
				Type json.RawMessage `json:"type"`
			} `json:"items"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(schema, &s); err != nil {
		return false, ""
	}
	p, ok := s.Properties[key]
	if !ok {
		return false, ""
	}
	types := schemaTypes(p.Type)
	for _, t := range types {
		if t == "array" {
			isArray = true
		}
	}
	if isArray && p.Items != nil {
		if it := schemaTypes(p.Items.Type); len(it) == 1 {
			itemType = it[0]
		}
	}
	return isArray, itemType
}

// schemaTypes reads a JSON Schema "type": a string or a list of strings.
func schemaTypes(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

// parseListValue parses the value of an array-typed config key: a JSON
// array as is, otherwise comma-separated items, each kept as a string when
// the schema says the items are strings and parsed with parseValue
// otherwise. An empty value is an empty list.
func parseListValue(s, itemType string) any {
	if v, ok := parseValue(s).([]any); ok {
		return v
	}
	if strings.TrimSpace(s) == "" {
		return []any{}
	}
	parts := strings.Split(s, ",")
	out := make([]any, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if itemType == "string" {
			out = append(out, p)
		} else {
			out = append(out, parseValue(p))
		}
	}
	return out
}
