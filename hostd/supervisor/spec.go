package supervisor

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Defaults applied to a Spec's zero fields.
const (
	// DefaultStartTimeout bounds how long a started child has to become
	// ready (see WithReadiness).
	DefaultStartTimeout = 30 * time.Second
	// DefaultStopGrace is how long a child has to exit after SIGTERM before
	// it is killed with SIGKILL.
	DefaultStopGrace = 10 * time.Second
)

var (
	// pluginRE keeps names usable in a file name: the pidfile is
	// "<plugin>-<instance>.pid".
	pluginRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// instanceRE has no '-', so "<plugin>-<instance>" splits one way only
	// and two instances never share a pidfile.
	instanceRE = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)
)

// Spec says which child process to run. Zero durations take the defaults
// (see WithDefaults); everything else is used as given.
type Spec struct {
	// Plugin is the plugin name: letters, digits, '_', '.' or '-', starting
	// with a letter or digit.
	Plugin string
	// Instance identifies this instance of the plugin on the host: letters,
	// digits, '_' or '.' (no '-').
	Instance string
	// Binary is the executable: a path, or a name looked up in $PATH.
	Binary string
	// Args are the arguments after the program name.
	Args []string
	// Env lists KEY=VALUE entries added to the environment the supervisor
	// itself runs with. A key given here overrides the inherited value.
	Env []string
	// Dir is the child's working directory; empty means the supervisor's.
	Dir string
	// StartTimeout bounds the readiness check (default DefaultStartTimeout).
	StartTimeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when the child is
	// stopped (default DefaultStopGrace).
	StopGrace time.Duration
}

// WithDefaults returns s with its zero durations set to the defaults. It is
// the only place the defaults are applied.
func (s Spec) WithDefaults() Spec {
	if s.StartTimeout == 0 {
		s.StartTimeout = DefaultStartTimeout
	}
	if s.StopGrace == 0 {
		s.StopGrace = DefaultStopGrace
	}
	return s
}

// Validate checks s (zero durations are valid: they take the defaults). The
// error is a *FieldError wrapping ErrInvalidSpec that names the bad field.
func (s Spec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Kind: ErrInvalidSpec, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case !pluginRE.MatchString(s.Plugin):
		return bad("Plugin", "%q must be letters, digits, '_', '.' or '-', starting with a letter or digit", s.Plugin)
	case !instanceRE.MatchString(s.Instance):
		return bad("Instance", "%q must be letters, digits, '_' or '.'", s.Instance)
	case s.Binary == "":
		return bad("Binary", "must not be empty")
	case s.StartTimeout < 0:
		return bad("StartTimeout", "%v must not be negative", s.StartTimeout)
	case s.StopGrace < 0:
		return bad("StopGrace", "%v must not be negative", s.StopGrace)
	}
	for i, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return bad(fmt.Sprintf("Env[%d]", i), "%q must be KEY=VALUE", kv)
		}
	}
	return nil
}

// pidfileName is the pidfile of the instance inside the state directory.
func (s Spec) pidfileName() string { return s.Plugin + "-" + s.Instance + pidfileExt }
