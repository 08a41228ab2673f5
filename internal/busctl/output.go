package busctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// printValue writes v as -o asks: indented JSON, or YAML with the same
// field names in the same order (see yamlFromJSON).
func (a *app) printValue(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if a.output == outputYAML {
		if b, err = yamlFromJSON(b); err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	_, err = a.stdout.Write(append(b, '\n'))
	return err
}

// emitRecord writes one record of a stream reader (an event, a dead
// letter, a log line) given as JSON: one line with -o json, one YAML
// document ("---" first) with -o yaml.
func (a *app) emitRecord(jsonDoc []byte) error {
	if a.output == outputYAML {
		y, err := yamlFromJSON(jsonDoc)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(append([]byte("---\n"), y...))
		return err
	}
	_, err := a.stdout.Write(append(jsonDoc, '\n'))
	return err
}

// yamlFromJSON converts a JSON document to block-style YAML. The JSON is
// read into a YAML node tree (JSON is YAML), so keys keep their JSON names
// and order, and strings that would read back as another type ("1.0",
// "true", "null") stay quoted.
func yamlFromJSON(doc []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, fmt.Errorf("encode output as YAML: %w", err)
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encode output as YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode output as YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// blockStyle drops the flow and quoting styles JSON gave every node, so
// the encoder picks YAML's own (block collections, plain scalars where
// they read back the same).
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// printJSON writes v as indented JSON (map keys sorted, so output is stable).
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// newTable returns a tabwriter for aligned columns; write rows with row and
// finish with Flush.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one tab-separated line; empty cells show as "-".
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
		// A tab or newline inside a cell would break the table.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(cells[i])
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// fmtTime shows t in UTC, or "-" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtValue shows a JSON value: strings as they are, everything else as
// compact JSON.
func fmtValue(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return `""`
		}
		return x
	case json.RawMessage:
		return compactJSON(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// compactJSON returns raw JSON without insignificant space, or the input
// as is when it is not JSON.
func compactJSON(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// truncate cuts s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fmtStringMap shows a map as "k=v, k=v" in key order.
func fmtStringMap(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}
