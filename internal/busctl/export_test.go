package busctl

import "io"

// SetTerminal makes busctl take every writer for a terminal (or none), so
// tests see what a person at a terminal sees; it returns the undo.
func SetTerminal(isTerminal bool) (restore func()) {
	old := terminal
	terminal = func(io.Writer) bool { return isTerminal }
	return func() { terminal = old }
}
