package schemas_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// kvKey is what a NATS KV key may be (nats.go jetstream's keyValid).
var kvKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

// HandledKey makes a valid KV key of any key, below the plugin's name,
// keeps ids that are valid as they are, and never gives two keys the same
// KV key.
func TestHandledKey(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct{ key, want string }{
		{"2ZqmZSIbwxUGh1aWOvYqS1", "p.2ZqmZSIbwxUGh1aWOvYqS1"},
		{"0f8fad5b-d9cb-469f-a165-70867728950e", "p.0f8fad5b-d9cb-469f-a165-70867728950e"},
		{"under_score", "p.under_score"},
		{strings.Repeat("a", 128), "p." + strings.Repeat("a", 128)},
		{"with.dot", "p.=d2l0aC5kb3Q"},
		{"order:42", "p.=b3JkZXI6NDI"},
		{"a b", "p.=YSBi"},
		{"=raw", "p.=PXJhdw"},
		{"ü", "p.=w7w"},
		{"*", "p.=Kg"},
		{">", "p.=Pg"},
		{long, ""}, // hashed: checked below
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := schemas.HandledKey("p", tt.key)
		if tt.key != long && got != tt.want {
			t.Errorf("HandledKey(p, %q) = %q, want %q", tt.key, got, tt.want)
		}
		if !kvKey.MatchString(got) || strings.HasSuffix(got, ".") || strings.Contains(got, "..") {
			t.Errorf("HandledKey(p, %.40q) = %q is not a valid KV key", tt.key, got)
		}
		if !strings.HasPrefix(got, "p.") || strings.Count(got, ".") != 1 {
			t.Errorf("HandledKey(p, %.40q) = %q is not one token below the plugin's name", tt.key, got)
		}
		if len(got) > len("p.")+128 {
			t.Errorf("HandledKey(p, %.40q) is %d long", tt.key, len(got))
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%.40q and %.40q share the KV key %s", tt.key, other, got)
		}
		seen[got] = tt.key
	}
	if a, b := schemas.HandledKey("p", long), schemas.HandledKey("p", long+"b"); a == b || !strings.HasPrefix(a, "p.==") {
		t.Errorf("long keys: %s, %s", a, b)
	}
}

// FuzzHandledKey: whatever the key, a valid KV key with one token below
// the plugin's name.
func FuzzHandledKey(f *testing.F) {
	for _, s := range []string{"ev-1", "a.b", "", "=", "==x", strings.Repeat("ü", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got := schemas.HandledKey("plugin", key)
		rest, ok := strings.CutPrefix(got, "plugin.")
		if !ok || rest == "" || strings.Contains(rest, ".") || !kvKey.MatchString(got) {
			t.Fatalf("HandledKey(%q) = %q", key, got)
		}
	})
}
