package busctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

var when = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

func TestJobDeploy(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	fb.reply(schemas.APIJobsDeploy, schemas.JobResponse{EventID: "ev-1", Job: schemas.Job{
		Name: "web", Version: "1.2.0", Image: "nginx:1.27", Status: schemas.JobDeployed, DeployedAt: when,
		Env: map[string]string{"A": "1", "DSN": "x=y"}}})

	out := b.mustRun(t, "job", "deploy", "web", "--version", "1.2.0", "--image", "nginx:1.27",
		"--env", "A=1", "--env", "DSN=x=y", "--env", "EMPTY=", "--label", "team=core")
	var got schemas.JobDeployRequest
	fb.lastRequest(t, schemas.APIJobsDeploy, &got)
	want := schemas.JobDeployRequest{Name: "web", Version: "1.2.0", Image: "nginx:1.27",
		Env:    map[string]string{"A": "1", "DSN": "x=y", "EMPTY": ""},
		Labels: map[string]string{"team": "core"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("request = %+v, want %+v", got, want)
	}
	for _, s := range []string{"NAME:", "web", "1.2.0", "nginx:1.27", "deployed", "A=1, DSN=x=y", "ev-1"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	tests := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"env without =", []string{"job", "deploy", "web", "--version", "1", "--image", "i", "--env", "FOO"},
			[]string{`invalid --env "FOO": want KEY=VALUE`, "busctl job deploy --help"}},
		{"label with empty key", []string{"job", "deploy", "web", "--version", "1", "--image", "i", "--label", "=x"},
			[]string{`invalid --label "=x"`, "key"}},
		{"duplicate env key", []string{"job", "deploy", "web", "--version", "1", "--image", "i", "--env", "A=1", "--env", "A=2"},
			[]string{`--env`, `"A"`, "twice"}},
		{"param without =", []string{"machine", "action", "m1", "increment", "--param", "incrementer/touched"},
			[]string{`invalid --param "incrementer/touched"`}},
		{"set without =", []string{"plugins", "config", "inc", "--set", "step"}, []string{`invalid --set "step"`}},
		{"missing required flag", []string{"job", "deploy", "web", "--version", "1"}, []string{"image"}},
		{"missing argument", []string{"job", "get", "--version", "1"}, []string{"missing NAME"}},
		{"too many arguments", []string{"machine", "get", "a", "b"}, []string{"takes 1 argument"}},
		{"bad output format", []string{"-o", "xml", "job", "ls"}, []string{`"xml"`, "table, json, yaml"}},
		{"unknown command", []string{"jobz"}, []string{`unknown command "jobz"`}},
		{"unknown subcommand", []string{"job", "launch"}, []string{`unknown command "launch"`, "deploy"}},
		{"unknown flag", []string{"job", "ls", "--frobnicate"}, []string{"frobnicate"}},
		{"bad timeout", []string{"--timeout", "0s", "job", "ls"}, []string{"--timeout"}},
		{"missing creds file", []string{"--creds", "/nonexistent/x.creds", "job", "ls"}, []string{"--creds"}},
		// Checked by busctl before any request (the broker would refuse it
		// with invalid_field, exit 1).
		{"bad severity", []string{"alert", "fire", "--severity", "bad", "--summary", "x"},
			[]string{`invalid --severity "bad": use one of info, warning, critical`, "busctl alert fire --help"}},
		{"severity in the wrong case", []string{"alert", "fire", "--severity", "CRITICAL", "--summary", "x"},
			[]string{`invalid --severity "CRITICAL"`}},
		// Flag values are explained without Go parser internals.
		{"int flag not a number", []string{"events", "tail", "--count", "abc"},
			[]string{`invalid value "abc" for --count: must be a whole number`, "busctl events tail --help"}},
		{"int shorthand flag not a number", []string{"events", "dlq", "-n", "1.5"},
			[]string{`invalid value "1.5" for --count: must be a whole number`}},
		{"int flag out of range", []string{"events", "tail", "--count", "99999999999999999999"},
			[]string{`invalid value "99999999999999999999" for --count: the number is out of range`}},
		{"duration flag", []string{"--timeout", "abc", "job", "ls"},
			[]string{`invalid value "abc" for --timeout: must be a duration such as 500ms, 10s`}},
		{"duration flag without unit", []string{"job", "ls", "--timeout", "10"},
			[]string{`invalid value "10" for --timeout: must be a duration`}},
		{"bool flag", []string{"events", "tail", "--follow=maybe"},
			[]string{`invalid value "maybe" for --follow: must be true or false`}},
		// Host overrides name the host they are for.
		{"disable without --host", []string{"plugins", "disable", "incrementer"},
			[]string{"busctl plugins disable needs --host HOST: the host to disable incrementer on", "busctl plugins disable --help"}},
		{"enable with an empty --host", []string{"plugins", "enable", "incrementer", "--host", ""},
			[]string{"busctl plugins enable needs --host HOST", "`busctl hosts ls` lists the hosts"}},
		{"enable without a name", []string{"plugins", "enable", "--host", "laptop"}, []string{"missing NAME"}},
		{"hosts get without a host", []string{"hosts", "get"}, []string{"missing HOST"}},
		{"hosts unknown subcommand", []string{"hosts", "rm"}, []string{`unknown command "rm"`, "get, ls"}},
		{"logs: bad --since", []string{"plugins", "logs", "incrementer", "--since", "yesterday"},
			[]string{`invalid --since "yesterday": want a duration back from now such as 10m or 1h30m, or an RFC 3339 time such as 2025-05-01T12:00:00Z`,
				"busctl plugins logs --help"}},
		{"logs: negative --since", []string{"plugins", "logs", "incrementer", "--since", "-5m"},
			[]string{`invalid --since "-5m": a duration back from now must be positive`}},
		{"logs: --since time without zone", []string{"plugins", "logs", "incrementer", "--since", "2025-05-01T12:00:00"},
			[]string{`invalid --since "2025-05-01T12:00:00"`}},
		{"logs: negative --count", []string{"plugins", "logs", "incrementer", "-n", "-1"}, []string{"--count must be 0 or more"}},
		{"logs: wildcard name", []string{"plugins", "logs", "*"}, []string{`invalid plugin name "*"`}},
		{"logs: dotted host", []string{"plugins", "logs", "incrementer", "--host", "a.b"}, []string{`invalid --host "a.b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.busctl(t, tt.args...)
			if r.code != busctl.ExitUsage {
				t.Errorf("exit %d, want %d", r.code, busctl.ExitUsage)
			}
			for _, s := range tt.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			for _, s := range []string{"strconv.", "time: invalid duration", "invalid argument", "invalid syntax"} {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr shows Go internals (%q):\n%s", s, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
		})
	}
	for _, ep := range allEndpoints {
		if n := len(fb.requests(ep)); n != 0 {
			t.Errorf("%d requests reached %s despite usage errors", n, ep)
		}
	}
}

func TestMachineAction(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	resp := schemas.MachineActionResponse{ActionID: "act-1", Machine: "m1", Command: "increment",
		Plugin: "incrementer", Result: json.RawMessage(`{"value":3,"touched":true}`)}
	fb.reply(schemas.APIMachinesAction, resp)

	out := b.mustRun(t, "machine", "action", "m1", "increment", "--param", "incrementer/step=2",
		"--param", "note=hello world", "--param", "list=[1,\"a\"]", "--param", `quoted="2"`,
		"--param", "flag=true", "--plugin", "incrementer")
	var got map[string]any
	fb.lastRequest(t, schemas.APIMachinesAction, &got)
	// busctl follows the action itself: the broker answers once the
	// plugin has taken it (here at once, with its result).
	want := map[string]any{"machine": "m1", "command": "increment", "plugin": "incrementer", "no_wait": true,
		"params": map[string]any{"incrementer/step": json.Number("2"), "note": "hello world",
			"list": []any{json.Number("1"), "a"}, "quoted": "2", "flag": true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("request = %#v\nwant %#v", got, want)
	}
	// Table mode prints the plugin's result.
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["value"] != 3.0 {
		t.Errorf("output is not the plugin's result: %v\n%s", err, out)
	}

	// -o json prints the whole MachineActionResponse.
	out = b.mustRun(t, "-o", "json", "machine", "action", "m1", "increment")
	var full schemas.MachineActionResponse
	if err := json.Unmarshal([]byte(out), &full); err != nil {
		t.Fatal(err)
	}
	if full.ActionID != "act-1" || full.Plugin != "incrementer" || string(full.Result) == "" {
		t.Errorf("-o json = %+v", full)
	}
	var res2 map[string]any
	if err := json.Unmarshal(full.Result, &res2); err != nil || res2["touched"] != true {
		t.Errorf("result is not the plugin's JSON: %s", full.Result)
	}

	// A string result prints as text.
	fb.reply(schemas.APIMachinesAction, schemas.MachineActionResponse{Result: json.RawMessage(`"done"`)})
	if out := b.mustRun(t, "machine", "action", "m1", "increment"); out != "done\n" {
		t.Errorf("string result printed as %q", out)
	}
}

// TestAPIErrors: busctl prints the broker's error as it is and phrases its
// own hint from the code and the structured details (never from the
// message): the broker's messages carry no busctl commands or flags.
func TestAPIErrors(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	// The errors as the broker sends them.
	fb.set(schemas.APIMachinesAction, func(req *wire.Request) {
		var r schemas.MachineActionRequest
		_ = json.Unmarshal(req.Data(), &r)
		if r.Command == "reboot" {
			_ = req.Reply(nil, &schemas.Error{Code: schemas.CodeUnknownAction, Field: "command",
				Message: `no active plugin offers action "reboot" on machines; available: increment, reset_count`,
				Details: map[string]any{schemas.DetailAvailable: []string{"increment", "reset_count"}}})
			return
		}
		_ = req.Reply(nil, &schemas.Error{Code: schemas.CodeMissingParam, Field: "params.incrementer/touched",
			Message: `action reset_count needs param "incrementer/touched": pass it with the request or set it on machine m1`,
			Details: map[string]any{schemas.DetailParam: "incrementer/touched", schemas.DetailMachine: "m1", schemas.DetailCommand: "reset_count"}})
	})
	fb.set(schemas.APIPluginsGet, func(req *wire.Request) {
		var r schemas.PluginGetRequest
		_ = json.Unmarshal(req.Data(), &r)
		if r.Name != "nope" {
			_ = req.Reply(schemas.PluginRecord{Name: r.Name}, nil)
			return
		}
		_ = req.Reply(nil, &schemas.Error{Code: schemas.CodeNotFound, Field: "name", Message: `plugin "nope" is not registered`,
			Details: map[string]any{schemas.DetailKind: "plugin", schemas.DetailName: "nope"}})
	})
	fb.fail(schemas.APIPluginsConfig, &schemas.Error{Code: schemas.CodeMissingParam, Field: "config.url",
		Message: `plugin notify-webhook needs config param "url"`,
		Details: map[string]any{schemas.DetailParam: "url", schemas.DetailPlugin: "notify-webhook"}})
	fb.fail(schemas.APIAlertsResolve, &schemas.Error{Code: schemas.CodeNotFound, Field: "id", Message: `alert "a1" does not exist`,
		Details: map[string]any{schemas.DetailKind: "alert", schemas.DetailName: "a1"}})
	fb.fail(schemas.APIMachinesGet, &schemas.Error{Code: schemas.CodeNotFound, Field: "name",
		Message: `machine "m9" does not exist (a machine exists once a param is set on it)`,
		Details: map[string]any{schemas.DetailKind: "machine", schemas.DetailName: "m9"}})
	fb.fail(schemas.APIJobsGet, &schemas.Error{Code: schemas.CodeNotFound, Field: "name", Message: "job web version 9 does not exist",
		Details: map[string]any{schemas.DetailKind: "job", schemas.DetailName: "web", "version": "9"}})
	fb.fail(schemas.APIJobsDeploy, &schemas.Error{Code: schemas.CodeAmbiguousAction, Field: "plugin",
		Message: "several plugins offer reboot on machines (ipmi, redfish): name the one to use",
		Details: map[string]any{schemas.DetailPlugins: []string{"redfish", "ipmi"}}})
	fb.fail(schemas.APIPluginsUnregister, &schemas.Error{Code: schemas.CodeConflict, Field: "name",
		Message: "plugin incrementer still has a running instance",
		Details: map[string]any{schemas.DetailPlugin: "incrementer", schemas.DetailRunning: true}})

	tests := []struct {
		name   string
		args   []string
		stderr string // exactly
	}{
		{"missing action param: --param or set-param", []string{"machine", "action", "m1", "reset_count"},
			"error: missing_param: action reset_count needs param \"incrementer/touched\": pass it with the request or set it on machine m1\n" +
				"hint: pass it with --param incrementer/touched=VALUE, or keep it on the machine for later calls: `busctl machine set-param m1 incrementer/touched VALUE`\n"},
		{"missing config param: --set", []string{"plugins", "config", "notify-webhook", "--set", "x=1"},
			"error: missing_param: plugin notify-webhook needs config param \"url\"\n" +
				"hint: set it with `busctl plugins config notify-webhook --set url=VALUE`\n"},
		{"unknown action", []string{"machine", "action", "m1", "reboot"},
			"error: unknown_action: no active plugin offers action \"reboot\" on machines; available: increment, reset_count\n" +
				"hint: `busctl plugins ls` shows the commands ACTIVE plugins offer (ACTIONS column) and their state\n"},
		{"ambiguous: --plugin with the candidates", []string{"job", "deploy", "w", "--version", "1", "--image", "i"},
			"error: ambiguous_action: several plugins offer reboot on machines (ipmi, redfish): name the one to use\n" +
				"hint: pick one with --plugin (ipmi, redfish)\n"},
		{"running instance: --force", []string{"plugins", "rm", "incrementer"},
			"error: conflict: plugin incrementer still has a running instance\n" +
				"hint: stop its instances first (`busctl plugins disable NAME --host HOST` with hostd), or pass --force\n"},
	}
	for kind, args := range map[string][]string{
		"plugin": {"plugins", "get", "nope"}, "machine": {"machine", "get", "m9"},
		"job": {"job", "get", "web", "--version", "9"}, "alert": {"alert", "resolve", "a1"},
	} {
		tests = append(tests, struct {
			name   string
			args   []string
			stderr string
		}{"not found: " + kind, args, ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.busctl(t, tt.args...)
			if r.code != busctl.ExitError {
				t.Errorf("exit %d, want %d", r.code, busctl.ExitError)
			}
			if tt.stderr == "" {
				// not found: the hint names the list command of the kind.
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[0], "error: not_found: ") || !strings.HasPrefix(lines[1], "hint: `busctl ") {
					t.Errorf("stderr =\n%s", r.stderr)
				}
				return
			}
			if r.stderr != tt.stderr {
				t.Errorf("stderr =\n%s\nwant\n%s", r.stderr, tt.stderr)
			}
		})
	}
}

func TestNoBroker(t *testing.T) {
	t.Run("NATS up, nothing answers", func(t *testing.T) {
		b := startBus(t)
		// busctl retries while nothing answers, within --timeout.
		r := b.busctl(t, "--timeout", "1s", "plugins", "ls")
		if r.code != busctl.ExitError {
			t.Errorf("exit %d, want 1", r.code)
		}
		for _, s := range []string{"no_responders", "plugbus.api.plugins.list",
			"hint: start the broker with `make run`, or point --server", "--prefix P needs the same --prefix P"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
	})
	t.Run("another --prefix", func(t *testing.T) {
		b := startBus(t)
		b.fakeBroker(t).reply(schemas.APIPluginsList, schemas.PluginListResponse{}) // under plugbus
		r := b.busctl(t, "--timeout", "1s", "--prefix", "acme", "plugins", "ls")
		if r.code != busctl.ExitError {
			t.Errorf("exit %d, want 1", r.code)
		}
		for _, s := range []string{"acme.api.plugins.list", "hint: busctl used --prefix acme (the default is plugbus)",
			"if the broker runs with the default prefix, drop --prefix", "make run"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
			}
		}
	})
	t.Run("no NATS server", func(t *testing.T) {
		var out, errOut bytes.Buffer
		// Nothing listens on port 1.
		code := busctl.Execute(context.Background(), []string{"-s", "nats://127.0.0.1:1", "job", "ls"}, &out, &errOut)
		if code != busctl.ExitError {
			t.Errorf("exit %d, want 1", code)
		}
		for _, s := range []string{"cannot connect to NATS at nats://127.0.0.1:1", "is the broker running", "make run"} {
			if !strings.Contains(errOut.String(), s) {
				t.Errorf("stderr lacks %q:\n%s", s, errOut.String())
			}
		}
	})
}

func TestTimeout(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	fb.set(schemas.APIJobsList, func(*wire.Request) { <-release })
	r := b.busctl(t, "--timeout", "200ms", "job", "ls")
	if r.code != busctl.ExitError || !strings.Contains(r.stderr, "timeout") || !strings.Contains(r.stderr, "--timeout") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestPluginsConfig(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	schema := json.RawMessage(`{"type":"object","properties":{
		"hosts":{"type":"array","items":{"type":"string"}},
		"ports":{"type":["array","null"],"items":{"type":"integer"}},
		"step":{"type":"integer"},
		"name":{"type":"string"}}}`)
	fb.reply(schemas.APIPluginsGet, schemas.PluginRecord{Name: "inc",
		Manifest: schemas.Manifest{Name: "inc", ConfigSchema: schema}})
	fb.reply(schemas.APIPluginsConfig, schemas.PluginRecord{Name: "inc",
		Config: map[string]any{"hosts": []any{"a", "b"}, "step": 3, "name": "x"}})

	out := b.mustRun(t, "plugins", "config", "inc", "--set", "hosts=a, b", "--set", "ports=80,443",
		"--set", "step=3", "--set", "name=x", "--set", "other=1,2", "--set", `tags=["t"]`)
	var got struct {
		Name string         `json:"name"`
		Set  map[string]any `json:"set"`
	}
	fb.lastRequest(t, schemas.APIPluginsConfig, &got)
	want := map[string]any{
		"hosts": []any{"a", "b"},                              // array of strings: split, kept as strings
		"ports": []any{json.Number("80"), json.Number("443")}, // array of integers: split, parsed
		"step":  json.Number("3"),                             // JSON
		"name":  "x",                                          // not JSON: string
		"other": "1,2",                                        // not an array in the schema: no split
		"tags":  []any{"t"},                                   // JSON array as is
	}
	if got.Name != "inc" || !reflect.DeepEqual(got.Set, want) {
		t.Errorf("request = %+v\nwant set %#v", got, want)
	}
	for _, s := range []string{"KEY", "VALUE", `hosts  ["a","b"]`, "name   x", "step   3"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}

	// Without --set it only reads: no manifest lookup, no set.
	b.mustRun(t, "plugins", "config", "inc")
	if n := len(fb.requests(schemas.APIPluginsGet)); n != 1 {
		t.Errorf("plugins.get called %d times, want 1 (only for --set)", n)
	}
	reqs := fb.requests(schemas.APIPluginsConfig)
	if last := string(reqs[len(reqs)-1]); last != `{"name":"inc"}` {
		t.Errorf("read request = %s", last)
	}
}

func TestRequestMapping(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	fb.reply(schemas.APIJobsDelete, schemas.JobResponse{Job: schemas.Job{Name: "web"}})
	fb.reply(schemas.APIJobsGet, schemas.Job{Name: "web"})
	fb.reply(schemas.APIMachinesSetParam, schemas.Machine{Name: "m1"})
	fb.reply(schemas.APIMachinesGet, schemas.Machine{Name: "m1"})
	fb.reply(schemas.APIAlertsFire, schemas.AlertResponse{Alert: schemas.Alert{ID: "a1"}})
	fb.reply(schemas.APIAlertsResolve, schemas.AlertResponse{Alert: schemas.Alert{ID: "a1"}})
	fb.reply(schemas.APIPluginsGet, schemas.PluginRecord{Name: "inc"})
	fb.reply(schemas.APIPluginsList, schemas.PluginListResponse{})
	fb.reply(schemas.APIPluginsUnregister, schemas.PluginRecord{Name: "old", Version: "1.0.0"})

	tests := []struct {
		args     []string
		endpoint string
		want     string
	}{
		{[]string{"job", "delete", "web", "--version", "1"}, schemas.APIJobsDelete, `{"name":"web","version":"1"}`},
		{[]string{"job", "get", "web", "--version", "1"}, schemas.APIJobsGet, `{"name":"web","version":"1"}`},
		{[]string{"machine", "set-param", "m1", "incrementer/touched", "5"}, schemas.APIMachinesSetParam,
			`{"machine":"m1","param":"incrementer/touched","value":5}`},
		{[]string{"machine", "get", "m1"}, schemas.APIMachinesGet, `{"name":"m1"}`},
		{[]string{"alert", "fire", "--severity", "critical", "--summary", "disk full", "--label", "host=h1", "--id", "a1"},
			schemas.APIAlertsFire, `{"id":"a1","severity":"critical","summary":"disk full","labels":{"host":"h1"}}`},
		{[]string{"alert", "resolve", "a1"}, schemas.APIAlertsResolve, `{"id":"a1"}`},
		{[]string{"plugins", "get", "inc"}, schemas.APIPluginsGet, `{"name":"inc"}`},
		{[]string{"plugins", "ls", "--state", "active"}, schemas.APIPluginsList, `{"state":"ACTIVE"}`},
		{[]string{"plugins", "rm", "old", "--force"}, schemas.APIPluginsUnregister, `{"name":"old","force":true}`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			b.mustRun(t, tt.args...)
			reqs := fb.requests(tt.endpoint)
			if len(reqs) == 0 {
				t.Fatalf("no request on %s", tt.endpoint)
			}
			if got := string(reqs[len(reqs)-1]); got != tt.want {
				t.Errorf("request = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTables(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	fb.reply(schemas.APIPluginsList, schemas.PluginListResponse{Plugins: []schemas.PluginRecord{
		{Name: "incrementer", Version: "1.0.0", State: schemas.StateActive, Consumer: "plugin_incrementer",
			Manifest: schemas.Manifest{Actions: []schemas.ActionSpec{{Command: "increment"}, {Command: "reset"}}}},
		{Name: "notify", Version: "0.3.0", State: schemas.StateError,
			LastError: &schemas.Error{Code: schemas.CodeMissingParam, Message: "token is missing"}},
		{Name: "old", Version: "1.0.0", State: schemas.StateStale,
			LastError: &schemas.Error{Code: schemas.CodeNoResponders, Message: "no instance is running", Plugin: "old"}},
	}})
	fb.reply(schemas.APIJobsList, schemas.JobListResponse{})

	out := b.mustRun(t, "plugins", "ls")
	want := "NAME         VERSION  STATE   CONSUMER            ACTIONS          LAST ERROR\n" +
		"incrementer  1.0.0    ACTIVE  plugin_incrementer  increment,reset  -\n" +
		"notify       0.3.0    ERROR   -                   -                missing_param: token is missing\n" +
		"old          1.0.0    STALE   -                   -                no_responders: no instance is running\n"
	if out != want {
		t.Errorf("plugins ls =\n%s\nwant\n%s", out, want)
	}

	// -o json prints the reply, with an empty list as [] (not null).
	out = b.mustRun(t, "job", "ls", "-o", "json")
	if out != "{\n  \"jobs\": []\n}\n" {
		t.Errorf("job ls -o json = %q", out)
	}
}
