package busctl_test

import (
	"strings"
	"testing"

	"github.com/plugbus/plugbus/internal/busctl"
)

// leafArgs are arguments each command runs with when its input is fine:
// every command of the tree must be here (TestEveryCommandFailsWell
// checks), so a new one gets its error paths tested too.
var leafArgs = map[string][]string{
	"actions cancel":        {"a1"},
	"actions get":           {"a1"},
	"actions ls":            nil,
	"actions watch":         {"a1"},
	"alert fire":            {"--severity", "info", "--summary", "x"},
	"alert get":             {"a1"},
	"alert ls":              nil,
	"alert resolve":         {"a1"},
	"chains get":            {"op1-abc-0"},
	"chains ls":             nil,
	"dlq ls":                nil,
	"dlq purge":             {"1"},
	"dlq replay":            {"1"},
	"dlq show":              {"1"},
	"events dlq":            nil,
	"events get":            {"1"},
	"events tail":           nil,
	"hooks ls":              nil,
	"hosts creds":           {"h1", "--plugins", "inc"},
	"hosts get":             {"h1"},
	"hosts ls":              nil,
	"hosts revoke":          {"h1"},
	"job delete":            {"web", "--version", "1"},
	"job deploy":            {"web", "--version", "1", "--image", "nginx"},
	"job get":               {"web", "--version", "1"},
	"job ls":                nil,
	"machine action":        {"m1", "increment"},
	"machine get":           {"m1"},
	"machine ls":            nil,
	"machine params":        {"m1"},
	"machine set-param":     {"m1", "p", "1"},
	"plugins config":        {"inc"},
	"plugins creds":         {"inc"},
	"plugins disable":       {"inc", "--host", "h1"},
	"plugins enable":        {"inc", "--host", "h1"},
	"plugins get":           {"inc"},
	"plugins logs":          {"inc"},
	"plugins ls":            nil,
	"plugins replay":        {"inc", "--since", "1h"},
	"plugins restart":       {"inc"},
	"plugins revoke":        {"inc"},
	"plugins rm":            {"inc"},
	"plugins verify":        {"inc"},
	"completion bash":       nil,
	"completion fish":       nil,
	"completion powershell": nil,
	"completion zsh":        nil,
	"dashboard login":       nil,
}

// offline commands need neither NATS nor a broker: dashboard login signs
// a token with the credentials file (TestDashboardLogin tests it).
var offline = map[string]bool{"dashboard login": true}

// Every command exits 1 with what to do when NATS is not there, and when
// NATS is there but no broker answers; an extra argument is a usage error
// (exit 2) pointing at its help.
func TestEveryCommandFailsWell(t *testing.T) {
	var commands []string
	for _, l := range strings.Split(busctl.Reference(), "\n") {
		if rest, ok := strings.CutPrefix(l, "| `busctl "); ok {
			f := strings.Fields(rest)
			commands = append(commands, f[0]+" "+strings.TrimSuffix(f[1], "`"))
		}
	}
	if len(commands) < 40 {
		t.Fatalf("only %d commands in the reference", len(commands))
	}
	b := startBus(t) // NATS, no broker
	for _, c := range commands {
		args, ok := leafArgs[c]
		if !ok {
			t.Errorf("busctl %s is not in leafArgs: add it, so its error paths are tested", c)
			continue
		}
		if strings.HasPrefix(c, "completion ") {
			continue
		}
		cmd := append(strings.Fields(c), args...)
		t.Run(strings.ReplaceAll(c, " ", "_"), func(t *testing.T) {
			// Each waits for --timeout while nothing answers.
			t.Parallel()
			if offline[c] {
				r := b.busctl(t, append(append([]string(nil), cmd...), "extra-arg")...)
				if r.code != busctl.ExitUsage || !strings.Contains(r.stderr, "--help' for usage") {
					t.Errorf("extra argument: busctl %s extra-arg: exit %d\n%s", c, r.code, r.stderr)
				}
				return
			}
			r := b.busctl(t, append([]string{"--timeout", "1s"}, cmd...)...)
			if r.code != busctl.ExitError || !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, "hint: ") ||
				!strings.Contains(r.stderr, "broker") {
				t.Errorf("no broker: busctl %s: exit %d\n%s", strings.Join(cmd, " "), r.code, r.stderr)
			}
			r = b.busctl(t, append([]string{"--server", "nats://127.0.0.1:1"}, cmd...)...)
			if r.code != busctl.ExitError || !strings.Contains(r.stderr, "cannot connect to NATS at nats://127.0.0.1:1") ||
				!strings.Contains(r.stderr, "hint: ") {
				t.Errorf("no NATS: busctl %s: exit %d\n%s", strings.Join(cmd, " "), r.code, r.stderr)
			}
			// One argument too many (commands taking a list take any).
			if c == "dlq replay" || c == "dlq purge" {
				return
			}
			extra := append(append([]string(nil), cmd...), "extra-arg")
			r = b.busctl(t, extra...)
			if r.code != busctl.ExitUsage || !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("extra argument: busctl %s: exit %d\n%s", strings.Join(extra, " "), r.code, r.stderr)
			}
		})
	}
}
