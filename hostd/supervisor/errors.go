package supervisor

import (
	"errors"
	"fmt"
)

// Errors returned by the package. Match them with errors.Is.
var (
	// ErrInvalidSpec is wrapped by New and Spec.Validate when a Spec field is
	// invalid. The error is a *FieldError naming the field.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrInvalidOption is wrapped by New when an Option rejects its value.
	ErrInvalidOption = errors.New("invalid option")
	// ErrAlreadyRunning is returned by Run when another Run of the same
	// Supervisor has not returned yet.
	ErrAlreadyRunning = errors.New("supervisor is already running")
)

// FieldError says which field of a Spec or Policy is invalid and why. It
// matches its kind (ErrInvalidSpec or ErrInvalidOption) with errors.Is.
type FieldError struct {
	Kind    error  // ErrInvalidSpec or ErrInvalidOption
	Field   string // Go field name, e.g. "StartTimeout" or "Policy.MaxBackoff"
	Problem string // what is wrong, lowercase
}

// Error returns "<kind>: <field>: <problem>".
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Kind, e.Field, e.Problem)
}

// Unwrap returns the error kind, so errors.Is(err, ErrInvalidSpec) works.
func (e *FieldError) Unwrap() error { return e.Kind }
