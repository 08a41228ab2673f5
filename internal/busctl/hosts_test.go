package busctl_test

import (
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/busctl"
	"github.com/plugbus/plugbus/schemas"
)

// testHost is a host with one instance in each kind of state hostd
// reports.
func testHost() schemas.Host {
	started := when.Add(2 * time.Second)
	one, zero := 1, 0
	return schemas.Host{Name: "laptop", Labels: map[string]string{"zone": "home", "os": "linux"}, HostdVersion: "0.3.0",
		State: schemas.HostUp, StartedAt: when, HeartbeatAt: when.Add(30 * time.Second),
		HeartbeatInterval: schemas.Duration(5 * time.Second), Plugins: []schemas.PluginInstance{
			{Plugin: "incrementer", Instance: "0", State: schemas.InstanceRunning, Binary: "bin/incrementer", Version: "1.0.0",
				PID: 4242, Restarts: 1, StartedAt: &started, StderrTail: []string{`{"level":"info","message":"listening"}`},
				LastExit: &schemas.InstanceExit{Cause: "exited", Code: &one, Time: when, Reason: "exited with code 1"}},
			{Plugin: "incrementer", Instance: "1", State: schemas.InstanceBackoff, Binary: "bin/incrementer", Version: "1.0.0",
				Restarts: 3, LastExit: &schemas.InstanceExit{Cause: "exited", Signal: "SIGKILL", Time: when},
				StderrTail: []string{"panic: boom", "goroutine 1 [running]:"}, Reason: "killed by SIGKILL"},
			{Plugin: "job-policy", Instance: "0", State: schemas.InstanceStopped,
				LastExit: &schemas.InstanceExit{Cause: "stopped", Code: &zero, Time: when}},
			{Plugin: "notify-webhook", Instance: "-", State: schemas.InstanceDisabled, Reason: "disabled in the config file"},
		}}
}

func TestHosts(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	lost := schemas.Host{Name: "rack-2", State: schemas.HostLost, StartedAt: when, HeartbeatAt: when,
		HeartbeatInterval: schemas.Duration(5 * time.Second), Plugins: []schemas.PluginInstance{
			{Plugin: "incrementer", Instance: "0", State: schemas.InstanceLost}}}
	fb.reply(schemas.APIHostsList, schemas.HostListResponse{Hosts: []schemas.Host{testHost(), lost}})
	fb.reply(schemas.APIHostsGet, testHost())

	t.Run("ls", func(t *testing.T) {
		out := b.mustRun(t, "hosts", "ls")
		want := "HOST    STATE  LABELS               HOSTD  PLUGINS  HEARTBEAT\n" +
			"laptop  UP     os=linux, zone=home  0.3.0  1/4      2025-05-01T12:00:30Z\n" +
			"rack-2  LOST   -                    -      0/1      2025-05-01T12:00:00Z\n"
		if out != want {
			t.Errorf("hosts ls =\n%s\nwant\n%s", out, want)
		}
	})
	t.Run("ls json", func(t *testing.T) {
		fb.reply(schemas.APIHostsList, schemas.HostListResponse{Hosts: []schemas.Host{lost}})
		out := b.mustRun(t, "hosts", "ls", "-o", "json")
		want := `{
  "hosts": [
    {
      "name": "rack-2",
      "state": "LOST",
      "started_at": "2025-05-01T12:00:00Z",
      "heartbeat_at": "2025-05-01T12:00:00Z",
      "heartbeat_interval": "5s",
      "plugins": [
        {
          "plugin": "incrementer",
          "instance": "0",
          "state": "LOST"
        }
      ]
    }
  ]
}
`
		if out != want {
			t.Errorf("hosts ls -o json =\n%s\nwant\n%s", out, want)
		}
		// No host: an empty list, not null.
		fb.reply(schemas.APIHostsList, schemas.HostListResponse{})
		if out := b.mustRun(t, "hosts", "ls", "-o", "json"); out != "{\n  \"hosts\": []\n}\n" {
			t.Errorf("hosts ls -o json with no host = %q", out)
		}
		if out := b.mustRun(t, "hosts", "ls"); out != "HOST  STATE  LABELS  HOSTD  PLUGINS  HEARTBEAT\n" {
			t.Errorf("hosts ls with no host = %q", out)
		}
	})
	t.Run("get", func(t *testing.T) {
		out := b.mustRun(t, "hosts", "get", "laptop")
		want := "NAME:       laptop\n" +
			"STATE:      UP\n" +
			"LABELS:     os=linux, zone=home\n" +
			"HOSTD:      0.3.0\n" +
			"STARTED:    2025-05-01T12:00:00Z\n" +
			"HEARTBEAT:  2025-05-01T12:00:30Z (every 5s)\n" +
			"\n" +
			"PLUGIN          INSTANCE  STATE     PID   RESTARTS  SINCE                 LAST EXIT       REASON\n" +
			"incrementer     0         RUNNING   4242  1         2025-05-01T12:00:02Z  exited code 1   -\n" +
			"incrementer     1         BACKOFF   -     3         -                     exited SIGKILL  killed by SIGKILL\n" +
			"job-policy      0         STOPPED   -     0         -                     stopped code 0  -\n" +
			"notify-webhook  -         DISABLED  -     0         -                     -               disabled in the config file\n" +
			"\n" +
			"stderr of incrementer/1 (last 2 lines):\n" +
			"  panic: boom\n" +
			"  goroutine 1 [running]:\n"
		if out != want {
			t.Errorf("hosts get =\n%s\nwant\n%s", out, want)
		}
		var req schemas.HostRef
		fb.lastRequest(t, schemas.APIHostsGet, &req)
		if req.Name != "laptop" {
			t.Errorf("request = %+v", req)
		}
	})
	t.Run("get json", func(t *testing.T) {
		fb.reply(schemas.APIHostsGet, lost)
		out := b.mustRun(t, "-o", "json", "hosts", "get", "rack-2")
		want := `{
  "name": "rack-2",
  "state": "LOST",
  "started_at": "2025-05-01T12:00:00Z",
  "heartbeat_at": "2025-05-01T12:00:00Z",
  "heartbeat_interval": "5s",
  "plugins": [
    {
      "plugin": "incrementer",
      "instance": "0",
      "state": "LOST"
    }
  ]
}
`
		if out != want {
			t.Errorf("hosts get -o json =\n%s\nwant\n%s", out, want)
		}
	})
	t.Run("state filter", func(t *testing.T) {
		b.mustRun(t, "hosts", "ls", "--state", "lost")
		reqs := fb.requests(schemas.APIHostsList)
		if got := string(reqs[len(reqs)-1]); got != `{"state":"LOST"}` {
			t.Errorf("request = %s, want the state upper-cased", got)
		}
	})
}

func TestHostsErrors(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	fb.fail(schemas.APIHostsList, &schemas.Error{Code: schemas.CodeInvalidField, Field: "state",
		Message: `field "state": must be one of "UP", "LOST", "STOPPED"`,
		Details: map[string]any{schemas.DetailAllowed: []string{"UP", "LOST", "STOPPED"}}})
	hostNotFound := &schemas.Error{Code: schemas.CodeNotFound, Field: "name",
		Message: `host "nope" has never reported (is its hostd running and connected?)`,
		Details: map[string]any{schemas.DetailKind: "host", schemas.DetailName: "nope"}}
	fb.fail(schemas.APIHostsGet, hostNotFound)
	fb.fail(schemas.APIPluginsDisable, hostNotFound)
	fb.fail(schemas.APIPluginsRestart, &schemas.Error{Code: schemas.CodeNotFound, Field: "name",
		Message: `no host reports an instance of plugin "incrementer"`,
		Details: map[string]any{schemas.DetailKind: "plugin", schemas.DetailName: "incrementer"}})

	tests := []struct {
		name   string
		args   []string
		stderr string // exactly
	}{
		{"bad state", []string{"hosts", "ls", "--state", "down"},
			"error: invalid_field: field \"state\": must be one of \"UP\", \"LOST\", \"STOPPED\"\n" +
				"hint: --state takes one of LOST, STOPPED, UP (any case)\n"},
		{"unknown host", []string{"hosts", "get", "nope"},
			"error: not_found: host \"nope\" has never reported (is its hostd running and connected?)\n" +
				"hint: `busctl hosts ls` lists the hosts\n"},
		{"disable on an unknown host", []string{"plugins", "disable", "incrementer", "--host", "nope"},
			"error: not_found: host \"nope\" has never reported (is its hostd running and connected?)\n" +
				"hint: `busctl hosts ls` lists the hosts\n"},
		{"restart where no host runs it", []string{"plugins", "restart", "incrementer"},
			"error: not_found: no host reports an instance of plugin \"incrementer\"\n" +
				"hint: no hostd reports an instance of it: `busctl hosts ls` lists the hosts, `busctl hosts get HOST` what each runs\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.busctl(t, tt.args...)
			if r.code != busctl.ExitError {
				t.Errorf("exit %d, want %d", r.code, busctl.ExitError)
			}
			if r.stderr != tt.stderr {
				t.Errorf("stderr =\n%s\nwant\n%s", r.stderr, tt.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
		})
	}
	// With --host, restart's not_found is about the host: the usual hint.
	fb.fail(schemas.APIPluginsRestart, hostNotFound)
	r := b.busctl(t, "plugins", "restart", "incrementer", "--host", "nope")
	if !strings.HasSuffix(r.stderr, "hint: `busctl hosts ls` lists the hosts\n") {
		t.Errorf("stderr =\n%s", r.stderr)
	}
}

func TestPluginsHostControl(t *testing.T) {
	b := startBus(t)
	fb := b.fakeBroker(t)
	off, on := false, true
	fb.reply(schemas.APIPluginsDisable, schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "laptop", Plugin: "incrementer", Enabled: &off, UpdatedAt: when}}})
	fb.reply(schemas.APIPluginsEnable, schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "laptop", Plugin: "incrementer", Enabled: &on, UpdatedAt: when}}})
	fb.reply(schemas.APIPluginsRestart, schemas.PluginHostResponse{Controls: []schemas.HostControl{
		{Host: "laptop", Plugin: "incrementer", Restart: "r1", UpdatedAt: when},
		{Host: "rack-2", Plugin: "incrementer", Restart: "r1", UpdatedAt: when}}})

	tests := []struct {
		args     []string
		endpoint string
		request  string
		stdout   string
	}{
		{[]string{"plugins", "disable", "incrementer", "--host", "laptop"}, schemas.APIPluginsDisable,
			`{"name":"incrementer","host":"laptop"}`,
			"disabled incrementer on host laptop (hostd stops it)\n"},
		{[]string{"plugins", "enable", "incrementer", "--host", "laptop"}, schemas.APIPluginsEnable,
			`{"name":"incrementer","host":"laptop"}`,
			"enabled incrementer on host laptop (hostd starts it if the host's labels place it there)\n"},
		{[]string{"plugins", "restart", "incrementer"}, schemas.APIPluginsRestart,
			`{"name":"incrementer"}`,
			"restart of incrementer requested on host laptop (hostd restarts its instances)\n" +
				"restart of incrementer requested on host rack-2 (hostd restarts its instances)\n"},
		{[]string{"plugins", "restart", "incrementer", "--host", "laptop"}, schemas.APIPluginsRestart,
			`{"name":"incrementer","host":"laptop"}`, ""},
		{[]string{"-o", "json", "plugins", "disable", "incrementer", "--host", "laptop"}, schemas.APIPluginsDisable,
			`{"name":"incrementer","host":"laptop"}`,
			`{
  "controls": [
    {
      "host": "laptop",
      "plugin": "incrementer",
      "enabled": false,
      "updated_at": "2025-05-01T12:00:00Z"
    }
  ]
}
`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out := b.mustRun(t, tt.args...)
			reqs := fb.requests(tt.endpoint)
			if len(reqs) == 0 {
				t.Fatalf("no request on %s", tt.endpoint)
			}
			if got := string(reqs[len(reqs)-1]); got != tt.request {
				t.Errorf("request = %s, want %s", got, tt.request)
			}
			if tt.stdout != "" && out != tt.stdout {
				t.Errorf("stdout =\n%s\nwant\n%s", out, tt.stdout)
			}
		})
	}
}
