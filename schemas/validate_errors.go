package schemas

import (
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// maxDetails bounds the number of errors listed in Details["errors"].
const maxDetails = 20

var printer = message.NewPrinter(language.English)

// leaf is one failed keyword of a validation error tree.
type leaf struct {
	e *jsonschema.ValidationError
	// alt is the nearest anyOf/oneOf ancestor, whose alternatives all failed.
	alt    *jsonschema.ValidationError
	tokens []string // the offending field: instance location (+ property)
	rank   int      // lower wins among equally deep leaves
	field  string
	text   string // what is wrong, without the field
	got    string // the offending value, formatted, or ""
	value  any    // the value at the leaf's instance location
	hidden bool   // the value is (or holds) a secret: never shown
}

// convert turns a jsonschema validation failure into an *Error naming the
// most specific (deepest) offending field.
//
// secret names the top-level properties whose values must not appear in
// the error (a config schema's writeOnly properties): a failure about one
// of them, or about the whole document, says what is wrong without the
// value.
func convert(verr *jsonschema.ValidationError, inst any, prefix string, document bool, docs map[string]any, secret map[string]bool) *Error {
	if _, ok := inst.(map[string]any); document && !ok {
		return &Error{Code: CodeBadRequest, Field: rootField,
			Message: "the body must be a JSON object, got " + jsonType(inst)}
	}
	var leaves []*leaf
	collect(verr, nil, &leaves)
	if len(leaves) == 0 { // cannot happen: a failure has at least one leaf
		return &Error{Code: CodeInvalidField, Field: rootField, Message: verr.Error()}
	}
	for _, l := range leaves {
		if k, ok := l.e.ErrorKind.(*kind.PropertyNames); ok {
			l.e.InstanceLocation = propertyOwner(inst, l.e.InstanceLocation, k.Property)
		}
		l.tokens, l.rank = leafField(l.e)
		l.field = renderField(prefix, inst, l.tokens)
		l.value = valueAt(inst, l.e.InstanceLocation)
		l.text, l.got = describe(l.e, docs)
		if loc := l.e.InstanceLocation; len(secret) > 0 && (len(loc) == 0 || secret[loc[0]]) {
			l.got, l.hidden = "", true
		}
	}
	sort.SliceStable(leaves, func(i, j int) bool {
		a, b := leaves[i], leaves[j]
		if len(a.tokens) != len(b.tokens) {
			return len(a.tokens) > len(b.tokens)
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if a.field != b.field {
			return a.field < b.field
		}
		return a.text < b.text
	})

	var (
		first   *Error
		seen    = map[string]bool{}
		details []any
	)
	for _, l := range leaves {
		msg := fmt.Sprintf("field %q: %s", l.field, alternatives(l, docs))
		if seen[l.field+"\x00"+msg] {
			continue
		}
		seen[l.field+"\x00"+msg] = true
		if first == nil {
			first = &Error{Code: CodeInvalidField, Field: l.field, Message: msg}
			if k, ok := l.e.ErrorKind.(*kind.Enum); ok && l.alt == nil {
				first.Details = map[string]any{DetailAllowed: k.Want}
			}
		}
		if len(details) < maxDetails {
			details = append(details, map[string]any{"field": l.field, "message": msg})
		}
	}
	if len(details) > 1 {
		if first.Details == nil {
			first.Details = map[string]any{}
		}
		first.Details["errors"] = details
	}
	return first
}

// collect appends the leaves of the error tree under e.
func collect(e, alt *jsonschema.ValidationError, out *[]*leaf) {
	switch e.ErrorKind.(type) {
	case *kind.AnyOf, *kind.OneOf:
		alt = e
	case *kind.PropertyNames:
		// Its causes validate the property name as a root document;
		// report the name itself.
		*out = append(*out, &leaf{e: e, alt: alt})
		return
	}
	if len(e.Causes) == 0 {
		*out = append(*out, &leaf{e: e, alt: alt})
		return
	}
	for _, c := range e.Causes {
		collect(c, alt, out)
	}
}

// propertyOwner returns the location of the object holding property prop.
// jsonschema v6.0.3 can report a propertyNames failure at a wrong location
// (its location slice is shared with sibling validations), so the reported
// loc is checked against the instance and, when wrong, replaced by the
// object at the same depth that holds prop and agrees most with loc.
func propertyOwner(inst any, loc []string, prop string) []string {
	holds := func(path []string) bool {
		m, ok := valueAt(inst, path).(map[string]any)
		if !ok {
			return false
		}
		_, ok = m[prop]
		return ok
	}
	if holds(loc) {
		return loc
	}
	var best []string
	bestScore := -1
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		if len(path) == len(loc) {
			if holds(path) {
				score := 0
				for i := range path {
					if path[i] == loc[i] {
						score++
					}
				}
				if score > bestScore {
					best, bestScore = append([]string(nil), path...), score
				}
			}
			return
		}
		switch c := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(c) {
				walk(c[k], append(path, k))
			}
		case []any:
			for i, x := range c {
				walk(x, append(path, strconv.Itoa(i)))
			}
		}
	}
	walk(inst, nil)
	if best == nil {
		return loc
	}
	return best
}

// leafField returns the tokens of the field a leaf is about and its rank.
// Errors about a property of an object (missing, unknown) name the property.
func leafField(e *jsonschema.ValidationError) ([]string, int) {
	loc := append([]string(nil), e.InstanceLocation...)
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		props := append([]string(nil), k.Properties...)
		sort.Strings(props)
		if len(props) > 0 {
			return append(loc, props[0]), 0
		}
		return loc, 0
	case *kind.Required:
		if len(k.Missing) > 0 {
			return append(loc, k.Missing[0]), 1
		}
	case *kind.DependentRequired:
		if len(k.Missing) > 0 {
			return append(loc, k.Missing[0]), 1
		}
	case *kind.Dependency:
		if len(k.Missing) > 0 {
			return append(loc, k.Missing[0]), 1
		}
	case *kind.PropertyNames:
		return append(loc, k.Property), 1
	}
	return loc, 2
}

// renderField renders tokens as a dotted path under prefix, with array
// indexes in brackets: "manifest.hooks[0].failure_policy".
func renderField(prefix string, inst any, tokens []string) string {
	var sb strings.Builder
	sb.WriteString(prefix)
	cur := inst
	for _, tok := range tokens {
		if arr, ok := cur.([]any); ok {
			sb.WriteString("[" + tok + "]")
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(arr) {
				cur = arr[i]
			} else {
				cur = nil
			}
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(tok)
		if m, ok := cur.(map[string]any); ok {
			cur = m[tok]
		} else {
			cur = nil
		}
	}
	if sb.Len() == 0 {
		return rootField
	}
	return sb.String()
}

// valueAt returns the value at an instance location, or nil.
func valueAt(inst any, loc []string) any {
	cur := inst
	for _, tok := range loc {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

// alternatives returns what is wrong with l's field; when l failed inside an
// anyOf/oneOf about that same value, it names every alternative, in the
// schema's order.
func alternatives(l *leaf, docs map[string]any) string {
	if l.alt == nil || len(l.alt.InstanceLocation) != len(l.e.InstanceLocation) {
		return withGot(l.text, l.got)
	}
	var all []*leaf
	for _, c := range l.alt.Causes {
		collect(c, l.alt, &all)
	}
	var texts []string
	for _, o := range all {
		if len(o.e.InstanceLocation) != len(l.e.InstanceLocation) {
			continue
		}
		if t, _ := describe(o.e, docs); !contains(texts, t) {
			texts = append(texts, t)
		}
	}
	if l.hidden {
		return strings.Join(texts, ", or ")
	}
	return withGot(strings.Join(texts, ", or "), formatValue(l.value))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func withGot(text, got string) string {
	if got == "" {
		return text
	}
	return text + " (got " + got + ")"
}

// describe says in plain words what a leaf error means.
func describe(e *jsonschema.ValidationError, docs map[string]any) (text, got string) {
	switch k := e.ErrorKind.(type) {
	case *kind.Required, *kind.Dependency:
		return "is required", ""
	case *kind.DependentRequired:
		return fmt.Sprintf("is required when %q is set", k.Prop), ""
	case *kind.AdditionalProperties:
		node := schemaNode(docs, e.SchemaURL)
		if props, ok := node["properties"].(map[string]any); ok && len(props) > 0 {
			return "is not a known field (known fields: " + strings.Join(sortedKeys(props), ", ") + ")", ""
		}
		if pats, ok := node["patternProperties"].(map[string]any); ok && len(pats) > 0 {
			return "is not an allowed key: keys must match " + strings.Join(sortedKeys(pats), " or "), ""
		}
		return "is not allowed", ""
	case *kind.PropertyNames:
		var inner []*leaf
		for _, c := range e.Causes {
			collect(c, nil, &inner)
		}
		if len(inner) > 0 {
			t, _ := describe(inner[0].e, docs)
			return "is not an allowed key: the key " + t, ""
		}
		return "is not an allowed key", ""
	case *kind.Type:
		return "must be " + typeList(k.Want), jsonTypeName(k.Got)
	case *kind.Enum:
		return "must be one of " + valueList(k.Want), formatValue(k.Got)
	case *kind.Const:
		return "must be " + formatValue(k.Want), formatValue(k.Got)
	case *kind.Pattern:
		if h := hint(docs, e.SchemaURL, "x-hint"); h != "" {
			return "must be " + h, formatValue(k.Got)
		}
		return "must match pattern " + k.Want, formatValue(k.Got)
	case *kind.Format:
		return "must be a valid " + formatName(k.Want), formatValue(k.Got)
	case *kind.MinLength:
		if k.Want == 1 {
			return "must not be empty", ""
		}
		return fmt.Sprintf("must be at least %d characters long", k.Want), fmt.Sprintf("%d", k.Got)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long", k.Want), fmt.Sprintf("%d characters", k.Got)
	case *kind.MinItems:
		if k.Want == 1 {
			return "must list at least one item", ""
		}
		return fmt.Sprintf("must list at least %d items", k.Want), fmt.Sprintf("%d", k.Got)
	case *kind.MaxItems:
		return fmt.Sprintf("must list at most %d items", k.Want), fmt.Sprintf("%d", k.Got)
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d keys", k.Want), fmt.Sprintf("%d", k.Got)
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d keys", k.Want), fmt.Sprintf("%d", k.Got)
	case *kind.UniqueItems:
		return fmt.Sprintf("must not repeat an item (items %d and %d are equal)", k.Duplicates[0], k.Duplicates[1]), ""
	case *kind.Minimum:
		return "must be at least " + ratString(k.Want), ratString(k.Got)
	case *kind.Maximum:
		return "must be at most " + ratString(k.Want), ratString(k.Got)
	case *kind.ExclusiveMinimum:
		return "must be greater than " + ratString(k.Want), ratString(k.Got)
	case *kind.ExclusiveMaximum:
		return "must be less than " + ratString(k.Want), ratString(k.Got)
	case *kind.MultipleOf:
		return "must be a multiple of " + ratString(k.Want), ratString(k.Got)
	case *kind.FalseSchema:
		return "is not allowed", ""
	case *kind.OneOf:
		return "matches more than one of the allowed forms", ""
	case *kind.Not:
		if h := hint(docs, e.SchemaURL, "x-not-hint"); h != "" {
			return h, ""
		}
		return "has a value that is not allowed", ""
	}
	return e.ErrorKind.LocalizedString(printer), ""
}

// hint returns the plain-words rule (key "x-hint" or "x-not-hint") of the
// schema a failed keyword at loc belongs to, "" when it has none. Schemas
// give one where the keyword itself (a long pattern, a not) would make a
// poor message.
func hint(docs map[string]any, loc, key string) string {
	parent := loc
	if i := strings.LastIndex(loc, "/"); i > strings.Index(loc, "#") {
		parent = loc[:i]
	}
	for _, l := range []string{loc, parent} {
		if h, ok := schemaNode(docs, l)[key].(string); ok {
			return h
		}
	}
	return ""
}

// schemaNode returns the schema object at an absolute schema location
// ("https://plugbus.io/schemas/x.json#/$defs/y"), or nil.
func schemaNode(docs map[string]any, loc string) map[string]any {
	base, frag, _ := strings.Cut(loc, "#")
	cur, ok := docs[base]
	if !ok {
		return nil
	}
	if frag = strings.TrimPrefix(frag, "/"); frag != "" {
		toks := strings.Split(frag, "/")
		for i, tok := range toks {
			if t, err := url.PathUnescape(tok); err == nil {
				tok = t
			}
			toks[i] = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		}
		cur = valueAt(cur, toks)
	}
	m, _ := cur.(map[string]any)
	return m
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// typeList renders JSON type names as "a string", "an object or null".
func typeList(types []string) string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = jsonTypeName(t)
	}
	return strings.Join(out, " or ")
}

func jsonTypeName(t string) string {
	switch t {
	case "object", "array", "integer":
		return "an " + t
	case "null":
		return "null"
	case "":
		return ""
	}
	return "a " + t
}

// jsonType returns the JSON type name of a parsed value, with an article.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "an integer"
		}
		return "a number"
	case float64, float32, int, int64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

func valueList(vals []any) string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = formatValue(v)
	}
	return strings.Join(out, ", ")
}

// formatValue renders a JSON value compactly, truncating long ones.
func formatValue(v any) string {
	if str, ok := v.(string); ok {
		return strconv.Quote(truncate(str))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return truncate(fmt.Sprint(v))
	}
	return truncate(string(b))
}

// truncate cuts s to about 64 bytes, on a rune boundary.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func formatName(f string) string {
	switch f {
	case "date-time":
		return "RFC 3339 date-time"
	case "uri":
		return "absolute URI"
	}
	return f
}

func ratString(r *big.Rat) string {
	if r == nil {
		return ""
	}
	if r.IsInt() {
		return r.Num().String()
	}
	s := strings.TrimRight(r.FloatString(9), "0")
	return strings.TrimSuffix(s, ".")
}
