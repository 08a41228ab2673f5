package busctl_test

import (
	"os"
	"testing"
)

// TestMain keeps the tests away from the nats CLI contexts of whoever runs
// them: busctl honours the context `nats context select` chose, so every
// test starts with an empty config dir of its own (tests about contexts
// set theirs).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "busctl-test-config-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Unsetenv("NATS_CONTEXT")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
