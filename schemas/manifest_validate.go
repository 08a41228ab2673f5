package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// MaxHookTimeout is the longest timeout a hook step may declare.
const MaxHookTimeout = 30 * time.Second

// Validate checks the manifest as the broker does on registration: against
// manifest/v1/manifest.json, then the rules a schema cannot express (the
// config schema compiles, hook timeouts are at most [MaxHookTimeout], no hook
// point or action is declared twice, a start duration is positive). Errors are *[Error] values whose Field
// is named as in a register request: "manifest.name",
// "manifest.hooks[1].hook", "manifest.config_schema".
func (m *Manifest) Validate() error {
	if len(m.ConfigSchema) > 0 && !json.Valid(m.ConfigSchema) {
		return configSchemaError("is not valid JSON")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return &Error{Code: CodeInternal, Message: "cannot encode the manifest as JSON: " + err.Error()}
	}
	sch, serr := compiled(ManifestV1)
	if serr != nil {
		return serr
	}
	inst, perr := parseDoc(b)
	if perr != nil {
		return perr
	}
	if err := sch.check(inst, "manifest", true); err != nil {
		return err
	}
	if _, err := CompileConfigSchema(m.ConfigSchema); err != nil {
		return err
	}
	if ev := m.Events; ev != nil && ev.Start != "" {
		if d, err := time.ParseDuration(ev.Start); err == nil && d <= 0 {
			return invalidField("manifest.events.start", "a duration must be positive, such as 24h (got %q); use \"new\" for new events only", ev.Start)
		}
	}
	hooks := map[string]int{}
	for i, h := range m.Hooks {
		field := fmt.Sprintf("manifest.hooks[%d]", i)
		if j, dup := hooks[h.Hook]; dup {
			return invalidField(field+".hook", "declares hook point %q again (already in manifest.hooks[%d])", h.Hook, j)
		}
		hooks[h.Hook] = i
		if h.Timeout.D() > MaxHookTimeout {
			return invalidField(field+".timeout", "must be at most %s (got %s)", MaxHookTimeout, h.Timeout.D())
		}
		for j, p := range h.After {
			if p == m.Name {
				return invalidField(fmt.Sprintf("%s.after[%d]", field, j), "names the plugin itself (%s); a step cannot run after itself", p)
			}
			if slices.Contains(h.Before, p) {
				return invalidField(fmt.Sprintf("%s.after[%d]", field, j), "names %s, which manifest.hooks[%d].before also names: a step cannot run both before and after another", p, i)
			}
		}
		for j, p := range h.Before {
			if p == m.Name {
				return invalidField(fmt.Sprintf("%s.before[%d]", field, j), "names the plugin itself (%s); a step cannot run before itself", p)
			}
		}
	}
	actions := map[[2]string]int{}
	for i, a := range m.Actions {
		key := [2]string{a.Model, a.Command}
		if j, dup := actions[key]; dup {
			return invalidField(fmt.Sprintf("manifest.actions[%d].command", i),
				"declares command %q on model %q again (already in manifest.actions[%d])", a.Command, a.Model, j)
		}
		actions[key] = i
		if a.Timeout.D() > MaxActionTimeout {
			return invalidField(fmt.Sprintf("manifest.actions[%d].timeout", i), "must be at most %s (got %s)", MaxActionTimeout, a.Timeout.D())
		}
	}
	return nil
}

// invalidField builds a CodeInvalidField error whose message names field.
func invalidField(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidField, Field: field,
		Message: fmt.Sprintf("field %q: ", field) + fmt.Sprintf(format, args...)}
}
