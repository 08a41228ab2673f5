package busctl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// busctl completion prints cobra's scripts for bash, zsh and fish; an
// unknown shell is a usage error; names complete from the broker.
func TestCompletion(t *testing.T) {
	bus := plugintest.Start(t)
	for shell, want := range map[string]string{"bash": "# bash completion V2 for busctl", "zsh": "#compdef busctl", "fish": "# fish completion for busctl",
		"powershell": "# powershell completion for busctl"} {
		if out := mustAt(t, bus, "completion", shell); !strings.HasPrefix(out, want) || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s starts %q", shell, out[:min(len(out), 60)])
		}
	}
	if r := at(t, bus, "completion", "tcsh"); r.code != busctl.ExitUsage || !strings.Contains(r.stderr, "use one of bash, fish, powershell, zsh") {
		t.Errorf("completion tcsh: exit %d\n%s", r.code, r.stderr)
	}

	mustAt(t, bus, "machine", "set-param", "rack-7", "x", "1")
	mustAt(t, bus, "machine", "set-param", "m1", "x", "1")
	mustAt(t, bus, "alert", "fire", "--severity", "info", "--summary", "s", "--id", "disk-full")
	p, err := sdk.New(schemas.Manifest{Name: "bumper", Version: "1.0.0", Actions: []schemas.ActionSpec{{Command: "bump", Model: "machines"}}},
		sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	p.HandleAction("bump", func(context.Context, *sdk.Action) (any, error) { return nil, nil })
	bus.StartPlugin(t, p)
	var action schemas.MachineActionResponse
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "bump"}, &action)
	complete := func(args ...string) []string {
		t.Helper()
		out := mustAt(t, bus, append([]string{"__complete"}, args...)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") {
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"machine", "params", ""}, "m1,rack-7"},
		{[]string{"machine", "get", "ra"}, "rack-7"},
		{[]string{"machine", "get", "m1", ""}, ""},
		{[]string{"alert", "resolve", ""}, "disk-full"},
		{[]string{"hooks", "ls", "alert."}, schemas.HookAlertPreNotify},
		{[]string{"chains", "ls", "--hook", "alert."}, schemas.HookAlertPreNotify},
		{[]string{"-o", ""}, "table,json,yaml"},
		{[]string{"dlq", "ls", "--code", "perm"}, schemas.ReasonPermanent},
		{[]string{"alert", "ls", "--status", "f"}, "firing"},
		{[]string{"actions", "ls", "--status", "r"}, "running"},
		{[]string{"actions", "get", ""}, action.ActionID},
		{[]string{"actions", "cancel", ""}, ""}, // it ended
	} {
		if got := strings.Join(complete(tt.args...), ","); got != tt.want {
			t.Errorf("complete %q = %s, want %s", tt.args, got, tt.want)
		}
	}
	// Nothing answers: nothing is completed, at once.
	if got := mustAt(t, bus, "--server", "nats://127.0.0.1:1", "__complete", "plugins", "get", ""); strings.TrimSpace(got) != ":4" {
		t.Errorf("completion without a bus: %q", got)
	}
}
