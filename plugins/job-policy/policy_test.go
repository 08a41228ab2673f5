package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

func TestManifestIsValid(t *testing.T) {
	m := Manifest()
	if err := m.Validate(); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	p, err := sdk.New(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(p); err != nil {
		t.Fatal(err)
	}
}

func TestMatching(t *testing.T) {
	tests := []struct {
		patterns []string // nil: the default
		image    string
		want     bool
	}{
		{nil, "docker.io/library/nginx:1.27", true},
		{nil, "nginx", true},
		{[]string{"*"}, "ghcr.io/acme/web@sha256:0123abcd", true},
		{[]string{"registry.internal/*"}, "registry.internal/web:1", true},
		{[]string{"registry.internal/*"}, "registry.internal/team/web:1", true}, // '*' crosses '/'
		{[]string{"registry.internal/*"}, "registry.internal.evil.com/web:1", false},
		{[]string{"registry.internal/*"}, "docker.io/evil:latest", false},
		{[]string{"registry.internal/*"}, "registry.internal", false},
		{[]string{"nginx:1.*"}, "nginx:1.27", true},
		{[]string{"nginx:1.*"}, "nginx:2.0", false},
		{[]string{"nginx"}, "nginx", true},
		{[]string{"nginx"}, "nginx:latest", false},
		{[]string{"*/acme/*"}, "ghcr.io/acme/web:1", true},
		{[]string{"{ghcr.io,quay.io}/acme/*"}, "quay.io/acme/web", true},
		{[]string{"{ghcr.io,quay.io}/acme/*"}, "docker.io/acme/web", false},
		{[]string{"redis:7.?"}, "redis:7.2", true},
		{[]string{"redis:7.?"}, "redis:7.12", false},
		{[]string{"registry.internal/*", "docker.io/library/*"}, "docker.io/library/redis:7", true},
		{[]string{}, "nginx", false}, // an empty list allows nothing
	}
	for _, tt := range tests {
		cfg := sdk.Config{}
		if tt.patterns != nil {
			cfg[ConfigAllowedImages] = tt.patterns
		}
		r, err := ParseRules(cfg)
		if err != nil {
			t.Fatalf("%v: %v", tt.patterns, err)
		}
		if got := r.Allows(tt.image); got != tt.want {
			t.Errorf("patterns %q, image %q: allowed = %v, want %v", tt.patterns, tt.image, got, tt.want)
		}
	}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name     string
		cfg      string // JSON, as the broker sends it
		patterns []string
		env      map[string]string
		field    string // "" = valid
		message  string
	}{
		{name: "empty", cfg: `{}`, patterns: []string{"*"}, env: map[string]string{}},
		{name: "null values", cfg: `{"allowed_images":null,"env":null}`, patterns: []string{"*"}, env: map[string]string{}},
		{name: "full", cfg: `{"allowed_images":["registry.internal/*","nginx:*"],"env":{"TZ":"UTC","HTTP_PROXY":"http://proxy:3128"}}`,
			patterns: []string{"registry.internal/*", "nginx:*"}, env: map[string]string{"TZ": "UTC", "HTTP_PROXY": "http://proxy:3128"}},
		{name: "bad glob", cfg: `{"allowed_images":["ok/*","registry.internal/[abc"]}`,
			field: "config.allowed_images[1]", message: `"registry.internal/[abc" is not a valid glob pattern`},
		{name: "empty pattern", cfg: `{"allowed_images":[""]}`, field: "config.allowed_images[0]", message: "must not be empty"},
		{name: "one pattern", cfg: `{"allowed_images":"{ghcr.io,quay.io}/acme/*"}`, patterns: []string{"{ghcr.io,quay.io}/acme/*"}, env: map[string]string{}},
		{name: "not an array", cfg: `{"allowed_images":{"a":"b"}}`, field: "config.allowed_images", message: "must be a glob pattern or an array of them"},
		{name: "pattern not a string", cfg: `{"allowed_images":["a",1]}`, field: "config.allowed_images[1]", message: "must be a string"},
		{name: "env not an object", cfg: `{"env":["A=1"]}`, field: "config.env", message: "must be an object"},
		{name: "env value not a string", cfg: `{"env":{"PORT":8080}}`, field: "config.env.PORT", message: "must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg sdk.Config
			if err := json.Unmarshal([]byte(tt.cfg), &cfg); err != nil {
				t.Fatal(err)
			}
			r, err := ParseRules(cfg)
			if tt.field != "" {
				var se *schemas.Error
				if !errors.As(err, &se) || se.Code != schemas.CodeInvalidField || se.Field != tt.field || !strings.Contains(se.Message, tt.message) {
					t.Fatalf("error = %#v, want invalid_field %s with %q", err, tt.field, tt.message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Patterns(), tt.patterns) || !reflect.DeepEqual(r.Env(), tt.env) {
				t.Errorf("rules = %v %v, want %v %v", r.Patterns(), r.Env(), tt.patterns, tt.env)
			}
		})
	}
}

// TestConfigSchema checks the manifest's config schema refuses what the
// broker must refuse before the plugin sees it.
func TestConfigSchema(t *testing.T) {
	cs, err := schemas.CompileConfigSchema(Manifest().ConfigSchema)
	if err != nil {
		t.Fatal(err)
	}
	valid := []string{`{}`, `{"allowed_images":["*"]}`, `{"allowed_images":["registry.internal/*","quay.io/*"]}`, `{"allowed_images":[],"env":{"A_1":"x"}}`}
	for _, doc := range valid {
		var cfg map[string]any
		_ = json.Unmarshal([]byte(doc), &cfg)
		if err := cs.Validate(cfg); err != nil {
			t.Errorf("%s refused: %v", doc, err)
		}
	}
	invalid := map[string]string{
		`{"allowed_images":7}`:           "config.allowed_images",
		`{"allowed_images":""}`:          "config.allowed_images",
		`{"allowed_images":"a/*"}`:       "config.allowed_images",
		`{"allowed_images":[""]}`:        "config.allowed_images[0]",
		`{"env":{"PORT":80}}`:            "config.env.PORT",
		`{"env":{"NOT-A-NAME":"x"}}`:     "config.env",
		`{"allowed_images":["a",["b"]]}`: "config.allowed_images[1]",
	}
	for doc, field := range invalid {
		var cfg map[string]any
		_ = json.Unmarshal([]byte(doc), &cfg)
		var se *schemas.Error
		if err := cs.Validate(cfg); !errors.As(err, &se) || !strings.HasPrefix(se.Field, field) {
			t.Errorf("%s: error = %v, want one on %s", doc, err, field)
		}
	}
}

func TestHandlers(t *testing.T) {
	ctx := context.Background()
	pol := NewPolicy()

	// Before any config: every image, no env.
	if resp, err := pol.PreDeploy(ctx, schemas.JobDeployRequest{Image: "anything/at:all"}); err != nil || resp.Outcome != schemas.HookContinue {
		t.Errorf("default PreDeploy = %+v, %v", resp, err)
	}
	if env, err := pol.RuntimeEnv(ctx, schemas.JobDeployRequest{}); err != nil || len(env) != 0 {
		t.Errorf("default RuntimeEnv = %v, %v", env, err)
	}

	if err := pol.Configure(ctx, sdk.Config{
		ConfigAllowedImages: []any{"registry.internal/*", "docker.io/library/*"},
		ConfigEnv:           map[string]any{"TZ": "UTC", "PORT": "8080"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := pol.PreDeploy(ctx, schemas.JobDeployRequest{Name: "web", Image: "docker.io/evil:latest"})
	if err != nil {
		t.Fatal(err)
	}
	want := `image "docker.io/evil:latest" matches none of the allowed patterns: registry.internal/*, docker.io/library/*`
	if resp.Outcome != schemas.HookReject || resp.Reason != want {
		t.Errorf("PreDeploy = %+v, want a rejection %q", resp, want)
	}
	if resp, _ := pol.PreDeploy(ctx, schemas.JobDeployRequest{Image: "registry.internal/web:2"}); resp.Outcome != schemas.HookContinue {
		t.Errorf("allowed image: %+v", resp)
	}
	env, err := pol.RuntimeEnv(ctx, schemas.JobDeployRequest{Env: map[string]string{"PORT": "80"}})
	if err != nil || !reflect.DeepEqual(env, map[string]string{"TZ": "UTC"}) {
		t.Errorf("RuntimeEnv = %v, %v; want TZ only (the job sets PORT itself)", env, err)
	}

	// A refused config keeps the rules in force.
	if err := pol.Configure(ctx, sdk.Config{ConfigAllowedImages: []any{"[bad"}}); err == nil {
		t.Error("a bad pattern was accepted")
	}
	if got := pol.Rules().Patterns(); !reflect.DeepEqual(got, []string{"registry.internal/*", "docker.io/library/*"}) {
		t.Errorf("patterns after a refused config = %v", got)
	}

	if err := pol.Configure(ctx, sdk.Config{ConfigAllowedImages: []any{}}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := pol.PreDeploy(ctx, schemas.JobDeployRequest{Image: "nginx"}); resp.Outcome != schemas.HookReject ||
		resp.Reason != `image "nginx" is not allowed: allowed_images is empty, so no image is` {
		t.Errorf("empty allow list: %+v", resp)
	}
}
