package busctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the output of this run")

// goldenVolatile is what changes from run to run: times, generated ids,
// ports.
var goldenVolatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<uuid>"},
	// A chain id: the operation, the attempt's start, the chain's number.
	{regexp.MustCompile(`\b[0-9A-Za-z]{22}-[0-9a-z]{1,13}-(\d+)\b`), "<id>-<attempt>-$1"},
	{regexp.MustCompile(`\b[0-9A-Za-z]{22}\b`), "<id>"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<port>"},
	// How long an action took: duration_ms in JSON and YAML, "(5ms)" after
	// its finish time in a table.
	{regexp.MustCompile(`(duration_ms"?: )[0-9.e+-]+`), "${1}<ms>"},
	{regexp.MustCompile(`<time> \((\d+(\.\d+)?(h|m|s|ms|µs|ns))+\)`), "<time> (<duration>)"},
}

// durations match how long something took, in a table ("0.4ms",
// "1.2s") and in JSON and YAML (duration_ms).
var (
	tableDuration = regexp.MustCompile(`\b\d+\.\dm?s( +|$)`)
	fieldDuration = regexp.MustCompile(`(duration_ms"?: )[0-9.e+-]+`)
)

// stableDurations replaces durations with <ms>; in a table the cell keeps
// its width (the column is as wide as its DURATION header), so the columns
// after it stay where they were.
func stableDurations(s string) string {
	s = tableDuration.ReplaceAllStringFunc(s, func(m string) string {
		if pad := len(m) - len("<ms>"); strings.HasSuffix(m, " ") && pad > 0 {
			return "<ms>" + strings.Repeat(" ", pad)
		}
		return "<ms>"
	})
	return fieldDuration.ReplaceAllString(s, "${1}<ms>")
}

// golden compares got, made stable, with testdata/NAME.golden (written
// with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	for _, v := range goldenVolatile {
		got = v.re.ReplaceAllString(got, v.with)
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/busctl -run TestGolden -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update to take the new output)\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

// The output of representative commands, in each format, against a real
// broker with an SDK plugin: table columns, JSON field names and YAML
// (converted from the JSON, same names and order) stay as they are.
func TestGolden(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(schemas.Manifest{
		Name: "counter", Version: "1.2.0", Description: "Counts things on machines and gives up on alerts.",
		Category: "demo", Priority: 5,
		Events:  &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, MaxDeliver: 2},
		Actions: []schemas.ActionSpec{{Command: "count", Model: "machines", RequiredParams: []string{"counter/step"}}},
		Hooks:   []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}},
	}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	p.HandleEvent(schemas.TypeAlertFired, func(context.Context, event.Event) error {
		return sdk.Permanent(errors.New("no receiver configured"))
	})
	p.HandleAction("count", func(context.Context, *sdk.Action) (any, error) { return map[string]any{"count": 1}, nil })
	p.HandleHook(schemas.HookJobPreDeploy, func(context.Context, *sdk.HookRequest) (*schemas.HookResponse, error) {
		return sdk.Continue(), nil
	})
	bus.StartPlugin(t, p)
	bus.MustCall(t, schemas.APIMachinesSetParam, schemas.MachineSetParamRequest{Machine: "m1", Param: "counter/step", Value: 2}, nil)
	bus.MustCall(t, schemas.APIMachinesSetParam, schemas.MachineSetParamRequest{Machine: "m1", Param: "rack", Value: "r12"}, nil)
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "disk-full", Severity: schemas.SeverityCritical, Summary: "disk /var is 97% full",
		Labels: map[string]string{"host": "h2"}}, nil)
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "load", Severity: schemas.SeverityWarning, Summary: "load is high"}, nil)
	bus.MustCall(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: "load"}, nil)
	var action schemas.MachineActionResponse
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "count"}, &action)
	bus.WaitFor(t, func() bool { return drained(bus, "counter") && len(bus.DeadLetters(t, "counter")) == 2 })
	var deployed schemas.JobResponse
	bus.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "nginx"}, &deployed)
	if len(deployed.Chains) == 0 {
		t.Fatalf("jobs.deploy ran no chain: %+v", deployed)
	}
	chain := deployed.Chains[0].ID
	bus.WaitFor(t, func() bool {
		var st schemas.ChainStatus
		return bus.Call(schemas.APIChainsGet, schemas.ChainGetRequest{ID: chain}, &st) == nil && st.Operation.State == schemas.OperationDone
	})

	commands := []struct {
		name string
		args []string
	}{
		{"plugins_ls", []string{"plugins", "ls"}},
		{"plugins_get", []string{"plugins", "get", "counter"}},
		{"alert_ls", []string{"alert", "ls"}},
		{"machine_params", []string{"machine", "params", "m1"}},
		{"hooks_ls", []string{"hooks", "ls", schemas.HookJobPreDeploy}},
		{"events_tail", []string{"events", "tail", "--type", "io.plugbus.alert.>", "--from-seq", "1", "-n", "3"}},
		{"dlq_ls", []string{"dlq", "ls"}},
		{"chains_get", []string{"chains", "get", chain}},
		{"chains_ls", []string{"chains", "ls"}},
		{"actions_ls", []string{"actions", "ls"}},
		{"actions_get", []string{"actions", "get", action.ActionID}},
	}
	for _, c := range commands {
		for _, format := range []string{"table", "json", "yaml"} {
			t.Run(c.name+"_"+format, func(t *testing.T) {
				out := mustAt(t, bus, append([]string{"-o", format}, c.args...)...)
				if format == "json" && c.name != "events_tail" && !json.Valid([]byte(out)) {
					t.Fatalf("-o json is not JSON:\n%s", out)
				}
				if strings.HasPrefix(c.name, "chains_") {
					out = stableDurations(out)
				}
				golden(t, c.name+"."+format, out)
			})
		}
	}
	if strings.Contains(mustAt(t, bus, "-o", "yaml", "plugins", "ls"), "{") {
		t.Error("-o yaml uses flow style")
	}
}
