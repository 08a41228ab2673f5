package sdk

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Config is a plugin's configuration: the JSON object the broker validated
// against the manifest's required params and config schema. Values have
// their JSON types (string, float64, bool, []any, map[string]any); the
// getters convert and fall back to a default when a key is missing or does
// not convert. Treat a Config as read-only.
type Config map[string]any

// Has reports whether key is set to a non-null value.
func (c Config) Has(key string) bool {
	v, ok := c[key]
	return ok && v != nil
}

// String returns key as a string, def when it is missing. Numbers and
// booleans are returned in their JSON form ("8080", "true"); other values
// yield def.
func (c Config) String(key, def string) string {
	s, ok, err := toString(c[key])
	if !ok || err != nil {
		return def
	}
	return s
}

// Int returns key as an int, def when it is missing or not an integer (a
// number without a fraction, or a string holding one).
func (c Config) Int(key string, def int) int {
	n, ok, err := toInt(c[key])
	if !ok || err != nil {
		return def
	}
	return n
}

// Float returns key as a float64, def when it is missing or not a number.
func (c Config) Float(key string, def float64) float64 {
	f, ok, err := toFloat(c[key])
	if !ok || err != nil {
		return def
	}
	return f
}

// Bool returns key as a bool, def when it is missing or not a boolean (true,
// false, or a string strconv.ParseBool accepts).
func (c Config) Bool(key string, def bool) bool {
	b, ok, err := toBool(c[key])
	if !ok || err != nil {
		return def
	}
	return b
}

// Duration returns key as a time.Duration, def when it is missing or not a
// duration. Strings are parsed with time.ParseDuration ("1m30s"); numbers
// are seconds.
func (c Config) Duration(key string, def time.Duration) time.Duration {
	d, ok, err := toDuration(c[key])
	if !ok || err != nil {
		return def
	}
	return d
}

// Strings returns key as a list of strings: a JSON array of strings, or a
// string holding a comma-separated list ("a, b" -> ["a" "b"]). It returns
// nil when key is missing or holds anything else.
func (c Config) Strings(key string) []string {
	s, ok, err := toStrings(c[key])
	if !ok || err != nil {
		return nil
	}
	return s
}

// Decode copies the configuration into v, a pointer to a struct with json
// tags (or anything else encoding/json decodes into).
func (c Config) Decode(v any) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	return nil
}

// The converters below return ok=false for a missing or null value, and an
// error for a present value that does not convert.

func toString(v any) (string, bool, error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	case float64, float32, int, int64, int32, uint, uint64, uint32, bool, json.Number:
		b, _ := json.Marshal(x)
		return string(b), true, nil
	default:
		return "", true, fmt.Errorf("want a string, got %s", jsonType(v))
	}
}

func toFloat(v any) (float64, bool, error) {
	switch x := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		return x, true, nil
	case float32:
		return float64(x), true, nil
	case int:
		return float64(x), true, nil
	case int64:
		return float64(x), true, nil
	case int32:
		return float64(x), true, nil
	case uint:
		return float64(x), true, nil
	case uint64:
		return float64(x), true, nil
	case uint32:
		return float64(x), true, nil
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0, true, fmt.Errorf("want a number, got %q", x.String())
		}
		return f, true, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, true, fmt.Errorf("want a number, got %q", x)
		}
		return f, true, nil
	default:
		return 0, true, fmt.Errorf("want a number, got %s", jsonType(v))
	}
}

func toInt(v any) (int, bool, error) {
	switch x := v.(type) {
	case int:
		return x, true, nil
	case int64:
		return int(x), true, nil
	case int32:
		return int(x), true, nil
	}
	f, ok, err := toFloat(v)
	if !ok || err != nil {
		if err != nil {
			err = fmt.Errorf("want an integer, got %s", describe(v))
		}
		return 0, ok, err
	}
	if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) || f > math.MaxInt64 || f < math.MinInt64 {
		return 0, true, fmt.Errorf("want an integer, got %v", f)
	}
	return int(f), true, nil
}

func toBool(v any) (bool, bool, error) {
	switch x := v.(type) {
	case nil:
		return false, false, nil
	case bool:
		return x, true, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err != nil {
			return false, true, fmt.Errorf("want a boolean, got %q", x)
		}
		return b, true, nil
	default:
		return false, true, fmt.Errorf("want a boolean, got %s", jsonType(v))
	}
}

func toDuration(v any) (time.Duration, bool, error) {
	if s, isString := v.(string); isString {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, true, fmt.Errorf("want a duration such as \"30s\", got %q", s)
		}
		return d, true, nil
	}
	f, ok, err := toFloat(v)
	if !ok || err != nil {
		if err != nil {
			err = fmt.Errorf("want a duration such as \"30s\" or a number of seconds, got %s", jsonType(v))
		}
		return 0, ok, err
	}
	return time.Duration(f * float64(time.Second)), true, nil
}

func toStrings(v any) ([]string, bool, error) {
	switch x := v.(type) {
	case nil:
		return nil, false, nil
	case []string:
		return append([]string(nil), x...), true, nil
	case string:
		var out []string
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, true, nil
	case []any:
		out := make([]string, 0, len(x))
		for i, e := range x {
			s, isString := e.(string)
			if !isString {
				return nil, true, fmt.Errorf("want a list of strings, item %d is %s", i, jsonType(e))
			}
			out = append(out, s)
		}
		return out, true, nil
	default:
		return nil, true, fmt.Errorf("want a list of strings, got %s", jsonType(v))
	}
}

func describe(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return jsonType(v)
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, float32, int, int64, int32, uint, uint64, uint32, json.Number:
		return "a number"
	case []any, []string:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// cloneJSON deep-copies a JSON-shaped value so callers cannot change the
// plugin's copy.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneJSON(e)
		}
		return m
	case Config:
		return Config(cloneJSON(map[string]any(x)).(map[string]any))
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = cloneJSON(e)
		}
		return s
	default:
		return v
	}
}

func cloneConfig(c map[string]any) Config {
	if c == nil {
		return Config{}
	}
	return Config(cloneJSON(c).(map[string]any))
}
