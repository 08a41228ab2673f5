package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"

	"github.com/gobwas/glob"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// DefaultAllowedImages is allowed_images when the config does not set it:
// every image.
var DefaultAllowedImages = []string{"*"}

// Rules is one configuration of the policy, compiled.
type Rules struct {
	patterns []string
	globs    []*glob.Pattern
	env      map[string]string
}

// ParseRules reads and compiles a config. allowed_images is an array of
// patterns or a single pattern; absent (or null) it means
// DefaultAllowedImages. A pattern that is not a valid glob, or a value
// of the wrong type, is an invalid_field error naming the config key, so the
// broker refuses the config with it.
func ParseRules(cfg sdk.Config) (*Rules, error) {
	patterns := DefaultAllowedImages
	if raw, set := cfg[ConfigAllowedImages]; set && raw != nil {
		switch v := raw.(type) {
		case string: // one pattern: --set allowed_images=registry.internal/*
			raw = []any{v}
		case []string: // set from Go rather than JSON
			raw = toAny(v)
		}
		list, ok := raw.([]any)
		if !ok {
			return nil, schemas.Errorf(schemas.CodeInvalidField, "config."+ConfigAllowedImages,
				`must be a glob pattern or an array of them, such as ["registry.internal/*"], got %T`, raw)
		}
		patterns = make([]string, len(list))
		for i, v := range list {
			s, ok := v.(string)
			if !ok {
				return nil, schemas.Errorf(schemas.CodeInvalidField, fmt.Sprintf("config.%s[%d]", ConfigAllowedImages, i),
					"an image pattern must be a string, got %T", v)
			}
			patterns[i] = s
		}
	}
	r := &Rules{patterns: append([]string(nil), patterns...), env: map[string]string{}}
	for i, pat := range r.patterns {
		field := fmt.Sprintf("config.%s[%d]", ConfigAllowedImages, i)
		if pat == "" {
			return nil, schemas.Errorf(schemas.CodeInvalidField, field, "an image pattern must not be empty")
		}
		g, err := glob.Compile(pat)
		if err != nil {
			return nil, schemas.Errorf(schemas.CodeInvalidField, field, "%q is not a valid glob pattern: %v", pat, err)
		}
		r.globs = append(r.globs, g)
	}
	if raw, set := cfg[ConfigEnv]; set && raw != nil {
		if m, ok := raw.(map[string]string); ok { // set from Go rather than JSON
			raw = toAnyMap(m)
		}
		env, ok := raw.(map[string]any)
		if !ok {
			return nil, schemas.Errorf(schemas.CodeInvalidField, "config."+ConfigEnv, "must be an object of env vars, got %T", raw)
		}
		for k, v := range env {
			s, ok := v.(string)
			if !ok {
				return nil, schemas.Errorf(schemas.CodeInvalidField, "config."+ConfigEnv+"."+k, "env var %s must be a string, got %T", k, v)
			}
			r.env[k] = s
		}
	}
	return r, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func toAnyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Allows reports whether image matches one of the allowed patterns.
func (r *Rules) Allows(image string) bool {
	for _, g := range r.globs {
		if g.Match(image) {
			return true
		}
	}
	return false
}

// Patterns returns the allowed image patterns.
func (r *Rules) Patterns() []string { return append([]string(nil), r.patterns...) }

// Env returns the env vars the policy adds.
func (r *Rules) Env() map[string]string { return maps.Clone(r.env) }

// Policy answers the hooks with the rules of the config last applied.
type Policy struct {
	rules atomic.Pointer[Rules]
}

// NewPolicy returns a Policy with the default rules (every image, no env)
// until a config is applied.
func NewPolicy() *Policy {
	p := &Policy{}
	r, _ := ParseRules(nil)
	p.rules.Store(r)
	return p
}

// Configure is the config handler: it compiles cfg and, when it is valid,
// makes it the rules the hooks use. An invalid config is refused and the
// previous rules stay.
func (p *Policy) Configure(_ context.Context, cfg sdk.Config) error {
	r, err := ParseRules(cfg)
	if err != nil {
		return err
	}
	p.rules.Store(r)
	return nil
}

// Rules returns the rules in force.
func (p *Policy) Rules() *Rules { return p.rules.Load() }

// PreDeploy answers job.pre_deploy: it rejects a job whose image matches
// none of the allowed patterns, naming the image and the patterns.
func (p *Policy) PreDeploy(_ context.Context, job schemas.JobDeployRequest) (*schemas.HookResponse, error) {
	r := p.Rules()
	if r.Allows(job.Image) {
		return sdk.Continue(), nil
	}
	if len(r.patterns) == 0 {
		return sdk.Reject(fmt.Sprintf("image %q is not allowed: allowed_images is empty, so no image is", job.Image)), nil
	}
	return sdk.Reject(fmt.Sprintf("image %q matches none of the allowed patterns: %s", job.Image, strings.Join(r.patterns, ", "))), nil
}

// RuntimeEnv answers job.runtime_env with the configured env vars, less the
// ones the job sets itself: the job's own value wins (the broker would
// otherwise refuse the deploy for setting one var twice).
func (p *Policy) RuntimeEnv(_ context.Context, job schemas.JobDeployRequest) (map[string]string, error) {
	env := p.Rules().Env()
	for k := range job.Env {
		delete(env, k)
	}
	return env, nil
}
