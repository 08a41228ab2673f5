package hostd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/hostd"
	"github.com/plugbus/plugbus/hostd/supervisor"
	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// The test binary is also every fake plugin hostd runs, and the hostd of
// the kill -9 test: the environment says which (hashicorp/go-plugin's
// pattern).
const (
	pluginEnv = "HOSTD_TEST_PLUGIN" // "NAME:BEHAVIOUR"
	hostdEnv  = "HOSTD_TEST_HOSTD"  // a config file path
)

// Fake plugin behaviours.
const (
	behaveOK          = "ok"           // a normal plugin
	behaveBadManifest = "bad-manifest" // define prints an invalid manifest
	behaveCrash       = "crash"        // listen exits 1 at once
	behaveHang        = "hang"         // listen never connects
	behaveNoisy       = "noisy"        // logs many lines at start
	behaveIgnoreTerm  = "ignore-term"  // ignores SIGTERM
	behaveGPU         = "gpu"          // its manifest needs component gpu
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(pluginEnv); spec != "" {
		name, behaviour, _ := strings.Cut(spec, ":")
		os.Exit(fakePlugin(name, behaviour))
	}
	if cfg := os.Getenv(hostdEnv); cfg != "" {
		os.Exit(runHostd(cfg))
	}
	os.Exit(m.Run())
}

func fakePlugin(name, behaviour string) int {
	m := schemas.Manifest{Name: name, Version: "1.0.0", Description: "hostd test plugin",
		Actions: []schemas.ActionSpec{{Command: "ping-" + name, Model: "machines"}}}
	if behaviour == behaveGPU {
		m.Components = []string{"gpu"}
	}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "define" {
		if behaviour == behaveBadManifest {
			fmt.Println(`{"name": "Bad Name", "version": "one"}`)
			return 0
		}
		sdk.Main(m, nil) // exits
	}
	switch behaviour {
	case behaveCrash:
		fmt.Fprintln(os.Stderr, "boom: cannot start")
		return 1
	case behaveHang:
		select {}
	}
	ctx := context.Background()
	if behaviour == behaveIgnoreTerm {
		signal.Ignore(syscall.SIGTERM)
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
	}
	setup := func(p *sdk.Plugin) error {
		p.HandleAction("ping-"+name, func(context.Context, *sdk.Action) (any, error) { return "pong", nil })
		if behaviour == behaveNoisy {
			log := zerolog.New(os.Stdout)
			for i := range 2000 {
				log.Info().Int("i", i).Msg("noisy line")
			}
		}
		return nil
	}
	if behaviour == behaveIgnoreTerm {
		// listen's own SIGTERM handling would stop it: run it by hand.
		p, err := sdk.New(m, sdk.WithPrefix(os.Getenv(wire.EnvPrefix)), sdk.WithHostInstance(os.Getenv(wire.EnvHost), os.Getenv(wire.EnvInstance)))
		if err != nil {
			return 1
		}
		_ = setup(p)
		nc, err := sdk.Connect(ctx, sdk.ConnectConfig{URL: os.Getenv(wire.EnvNATSURL)})
		if err != nil {
			return 1
		}
		if err := p.Run(ctx, nc); err != nil {
			return 1
		}
		return 0
	}
	sdk.Main(m, setup) // exits
	return 0
}

func runHostd(cfgPath string) int {
	d, err := hostd.New(hostd.Options{ConfigPath: cfgPath, Logger: zerolog.New(os.Stderr)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// bus is a nats-server and a broker.
type bus struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func startBus(t *testing.T) *bus {
	t.Helper()
	srv := testnats.Start(t, true)
	l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	b, err := broker.New(broker.Config{NATSURL: srv.ClientURL(), HeartbeatInterval: 100 * time.Millisecond, Logger: &l})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("broker: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker not ready")
	}
	nc := testnats.Connect(t, srv.ClientURL())
	js, _ := jetstream.New(nc)
	return &bus{url: srv.ClientURL(), nc: nc, js: js}
}

func (b *bus) call(t *testing.T, endpoint string, req, resp any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wire.Call(ctx, b.nc, wire.APISubject(wire.DefaultPrefix, endpoint), req, resp)
}

func (b *bus) host(t *testing.T, name string) (schemas.Host, bool) {
	t.Helper()
	var h schemas.Host
	err := b.call(t, schemas.APIHostsGet, schemas.HostRef{Name: name}, &h)
	return h, err == nil
}

// fakeBinary writes a script that runs the test binary as the fake plugin
// name with a behaviour, and returns its path.
func fakeBinary(t *testing.T, dir, name, behaviour string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	script := fmt.Sprintf("#!/bin/sh\n%s=%s:%s exec %q \"$@\"\n", pluginEnv, name, behaviour, self)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fastPolicy restarts at once, so crash loops finish within a test.
var fastPolicy = supervisor.Policy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Multiplier: 2,
	Jitter: 0, HealthyPeriod: time.Minute, MaxFailures: 5, FailureWindow: time.Minute}

// runDaemon runs a hostd in this process until the test ends; its logs
// (JSON) are in daemonLogs.
func runDaemon(t *testing.T, cfgPath string) (stop func()) {
	stop, _ = runDaemonLogs(t, cfgPath)
	return stop
}

func runDaemonLogs(t *testing.T, cfgPath string) (stop func(), logs *testnats.SyncBuffer) {
	t.Helper()
	logs = &testnats.SyncBuffer{}
	l := zerolog.New(logs).Level(zerolog.InfoLevel)
	p := fastPolicy
	d, err := hostd.New(hostd.Options{ConfigPath: cfgPath, Logger: l, Policy: &p, ReadyPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hostd: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("hostd did not stop within 60s")
		}
	}
	t.Cleanup(stop)
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("hostd stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("hostd not ready")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hostd logs:\n%s", logs.String())
		}
	})
	return stop, logs
}

// waitFor polls cond until it holds (bounded).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// instances returns the host's instances of a plugin.
func instances(h schemas.Host, plugin string) []schemas.PluginInstance {
	var out []schemas.PluginInstance
	for _, in := range h.Plugins {
		if in.Plugin == plugin {
			out = append(out, in)
		}
	}
	return out
}

func allIn(h schemas.Host, plugin string, state schemas.InstanceState, n int) bool {
	ins := instances(h, plugin)
	if len(ins) != n {
		return false
	}
	for _, in := range ins {
		if in.State != state {
			return false
		}
	}
	return true
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is gone for our purposes (this machine may not reap).
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

func baseConfig(b *bus, dir string) string {
	return fmt.Sprintf("host: testhost\nlabels: {zone: a}\nnats_url: %s\nstate_dir: %s\nstart_timeout: 10s\nstop_grace: 2s\nheartbeat_interval: 200ms\n",
		b.url, filepath.Join(dir, "state"))
}

// hostd starts what should run, says why the rest does not, and reports
// it all in the host record.
func TestDaemonRunsAndReports(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	writeConfig(t, cfg, baseConfig(b, dir)+fmt.Sprintf(`plugins:
  - binary: %s
    instances: 2
  - binary: %s
  - binary: %s
  - name: off
    binary: %s
    enabled: false
  - name: misnamed
    binary: %s
`, fakeBinary(t, dir, "alpha", behaveOK), fakeBinary(t, dir, "broken", behaveBadManifest), fakeBinary(t, dir, "gpuonly", behaveGPU),
		fakeBinary(t, dir, "off", behaveOK), fakeBinary(t, dir, "realname", behaveOK)))
	runDaemon(t, cfg)

	var h schemas.Host
	waitFor(t, "alpha running twice", func() bool {
		var ok bool
		h, ok = b.host(t, "testhost")
		return ok && allIn(h, "alpha", schemas.InstanceRunning, 2)
	})
	if h.State != schemas.HostUp || h.Labels["zone"] != "a" || h.HostdVersion == "" || h.HeartbeatInterval.D() != 200*time.Millisecond {
		t.Errorf("host record: %+v", h)
	}
	for _, in := range instances(h, "alpha") {
		if !alive(in.PID) || in.Version != "1.0.0" || in.StartedAt == nil {
			t.Errorf("instance %+v: want a live pid, the version and a start time", in)
		}
	}
	want := map[string]schemas.InstanceState{"broken": schemas.InstanceInvalid, "gpuonly": schemas.InstanceNotPlaced,
		"off": schemas.InstanceDisabled, "misnamed": schemas.InstanceInvalid}
	for name, state := range want {
		ins := instances(h, name)
		if len(ins) != 1 || ins[0].State != state || ins[0].Reason == "" {
			t.Errorf("%s: %+v, want one entry %s with a reason", name, ins, state)
		}
	}
	if r := instances(h, "broken")[0].Reason; !strings.Contains(r, "invalid manifest") || !strings.Contains(r, `field "name"`) {
		t.Errorf("bad manifest reason %q does not name the field", r)
	}
	if r := instances(h, "gpuonly")[0].Reason; !strings.Contains(r, "gpu") {
		t.Errorf("not placed reason %q", r)
	}
	// The registry has alpha ACTIVE: hostd's readiness waited for it.
	var rec schemas.PluginRecord
	if err := b.call(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "alpha"}, &rec); err != nil || rec.State != schemas.StateActive {
		t.Errorf("alpha in the registry: %+v %v", rec, err)
	}
	var ar schemas.MachineActionResponse
	if err := b.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "ping-alpha"}, &ar); err != nil {
		t.Errorf("action through a hostd plugin: %v", err)
	}
}

// A killed plugin is restarted with a new pid; one that crash-loops ends
// FAILED with its exit status and stderr, until an operator restarts it.
func TestDaemonRestartsAndCrashLoop(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	writeConfig(t, cfg, baseConfig(b, dir)+fmt.Sprintf("plugins:\n  - binary: %s\n  - binary: %s\n",
		fakeBinary(t, dir, "steady", behaveOK), fakeBinary(t, dir, "crasher", behaveCrash)))
	runDaemon(t, cfg)

	var h schemas.Host
	waitFor(t, "steady running, crasher FAILED", func() bool {
		var ok bool
		h, ok = b.host(t, "testhost")
		return ok && allIn(h, "steady", schemas.InstanceRunning, 1) && allIn(h, "crasher", schemas.InstanceFailed, 1)
	})
	c := instances(h, "crasher")[0]
	if c.LastExit == nil || c.LastExit.Code == nil || *c.LastExit.Code != 1 || c.Restarts < 4 ||
		!strings.Contains(strings.Join(c.StderrTail, "\n"), "boom: cannot start") || !strings.Contains(c.Reason, "5 failures") {
		t.Errorf("FAILED instance: %+v (exit %+v)", c, c.LastExit)
	}

	old := instances(h, "steady")[0]
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "steady back with a new pid", func() bool {
		h, _ = b.host(t, "testhost")
		in := instances(h, "steady")
		return len(in) == 1 && in[0].State == schemas.InstanceRunning && in[0].PID != old.PID && in[0].Restarts == old.Restarts+1
	})
	if in := instances(h, "steady")[0]; in.LastExit == nil || in.LastExit.Signal != "SIGKILL" {
		t.Errorf("last exit after kill -9: %+v", in.LastExit)
	}

	// An operator's restart gets the FAILED one going again (and failing).
	var resp schemas.PluginHostResponse
	if err := b.call(t, schemas.APIPluginsRestart, schemas.PluginHostRequest{Name: "crasher"}, &resp); err != nil ||
		len(resp.Controls) != 1 || resp.Controls[0].Host != "testhost" || resp.Controls[0].Restart == "" {
		t.Fatalf("restart: %+v %v", resp, err)
	}
	waitFor(t, "crasher out of FAILED", func() bool {
		h, _ = b.host(t, "testhost")
		in := instances(h, "crasher")
		return len(in) == 1 && in[0].State != schemas.InstanceFailed
	})
	waitFor(t, "crasher FAILED again", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "crasher", schemas.InstanceFailed, 1)
	})
}

// A plugin that does not become ready within the start timeout is killed
// and counted as a failed start.
func TestDaemonStartTimeout(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	body := strings.Replace(baseConfig(b, dir), "start_timeout: 10s", "start_timeout: 300ms", 1)
	writeConfig(t, cfg, body+fmt.Sprintf("plugins:\n  - binary: %s\n", fakeBinary(t, dir, "sleeper", behaveHang)))
	runDaemon(t, cfg)
	var h schemas.Host
	waitFor(t, "sleeper FAILED", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "sleeper", schemas.InstanceFailed, 1)
	})
	in := instances(h, "sleeper")[0]
	if in.LastExit == nil || in.LastExit.Cause != string(supervisor.CauseNotReady) || !strings.Contains(in.LastExit.Reason, "not ready within 300ms") {
		t.Errorf("last exit of a plugin that never got ready: %+v", in.LastExit)
	}
}

// hostd follows its config file and the operators' overrides without a
// restart of its own.
func TestDaemonReconciles(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	one := fakeBinary(t, dir, "first", behaveOK)
	two := fakeBinary(t, dir, "second", behaveOK)
	writeConfig(t, cfg, baseConfig(b, dir)+fmt.Sprintf("plugins:\n  - binary: %s\n", one))
	_, logs := runDaemonLogs(t, cfg)
	var h schemas.Host
	waitFor(t, "first running", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "first", schemas.InstanceRunning, 1)
	})
	firstPID := instances(h, "first")[0].PID

	// The config file gains a plugin and loses the other.
	writeConfig(t, cfg, baseConfig(b, dir)+fmt.Sprintf("plugins:\n  - binary: %s\n", two))
	waitFor(t, "second running, first gone", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "second", schemas.InstanceRunning, 1) && len(instances(h, "first")) == 0
	})
	waitFor(t, "first's process gone", func() bool { return !alive(firstPID) })

	// An operator disables it on this host, then enables it again.
	secondPID := instances(h, "second")[0].PID
	if err := b.call(t, schemas.APIPluginsDisable, schemas.PluginHostRequest{Name: "second", Host: "testhost"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second DISABLED", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "second", schemas.InstanceDisabled, 1)
	})
	waitFor(t, "second's process gone", func() bool { return !alive(secondPID) })
	if err := b.call(t, schemas.APIPluginsEnable, schemas.PluginHostRequest{Name: "second", Host: "testhost"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second running again", func() bool {
		h, _ = b.host(t, "testhost")
		in := instances(h, "second")
		return len(in) == 1 && in[0].State == schemas.InstanceRunning && in[0].PID != secondPID
	})
	// A bad edit is refused and the current config kept.
	writeConfig(t, cfg, baseConfig(b, dir)+"plugins:\n  - binary: x\n    instances: 0\n")
	waitFor(t, "the bad config refused", func() bool { return strings.Contains(logs.String(), "config file not reloaded") })
	if !strings.Contains(logs.String(), "plugins[0].instances") {
		t.Errorf("the refusal does not name the field:\n%s", logs)
	}
	if h, _ = b.host(t, "testhost"); !allIn(h, "second", schemas.InstanceRunning, 1) {
		t.Errorf("a bad config file changed what runs: %+v", h.Plugins)
	}

	// Enabling on an unknown host is refused, naming it.
	err := b.call(t, schemas.APIPluginsEnable, schemas.PluginHostRequest{Name: "second", Host: "nohost"}, nil)
	if !errors.Is(err, schemas.ErrNotFound) || !strings.Contains(err.Error(), "nohost") {
		t.Errorf("enable on an unknown host: %v", err)
	}
	err = b.call(t, schemas.APIPluginsDisable, schemas.PluginHostRequest{Name: "second"}, nil)
	if !errors.Is(err, schemas.ErrInvalidField) {
		t.Errorf("disable without a host: %v", err)
	}
}

// Plugin logs reach the log stream with their host, plugin and instance,
// rate-limited with a count of what was dropped.
func TestDaemonForwardsLogs(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	writeConfig(t, cfg, baseConfig(b, dir)+"log_rate: 50\n"+fmt.Sprintf("plugins:\n  - binary: %s\n", fakeBinary(t, dir, "chatty", behaveNoisy)))
	runDaemon(t, cfg)
	var h schemas.Host
	waitFor(t, "chatty running", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "chatty", schemas.InstanceRunning, 1)
	})
	ctx := context.Background()
	cons, err := b.js.OrderedConsumer(ctx, schemas.StreamLogs, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.LogsSubject(wire.DefaultPrefix, "testhost", "chatty")}})
	if err != nil {
		t.Fatal(err)
	}
	var recs []schemas.LogRecord
	dropped := 0
	waitFor(t, "log records with a drop count", func() bool {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var r schemas.LogRecord
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatalf("not a log record: %s", m.Data())
			}
			if m.Subject() != wire.LogSubject(wire.DefaultPrefix, "testhost", "chatty", "1") {
				t.Errorf("subject %s", m.Subject())
			}
			recs = append(recs, r)
			dropped += r.Dropped
		}
		return dropped > 0
	})
	noisy := 0
	for _, r := range recs {
		if r.Host != "testhost" || r.Plugin != "chatty" || r.Instance != "1" || r.Level == "" {
			t.Errorf("record %+v", r)
		}
		if r.Message == "noisy line" {
			noisy++
			if _, ok := r.Fields["i"]; !ok {
				t.Errorf("the line's own fields are lost: %+v", r)
			}
		}
	}
	if noisy == 0 || noisy >= 2000 {
		t.Errorf("%d noisy lines published of 2000 at 50 lines/s: the limit did not apply", noisy)
	}
	if err := schemas.Validate(schemas.APILogRecord, mustJSON(t, recs[0])); err != nil {
		t.Errorf("log record fails its schema: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostd's own stop stops every plugin, killing one that ignores SIGTERM
// after the grace, and reports the host STOPPED.
func TestDaemonStopsGracefully(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	body := strings.Replace(baseConfig(b, dir), "stop_grace: 2s", "stop_grace: 300ms", 1)
	writeConfig(t, cfg, body+fmt.Sprintf("plugins:\n  - binary: %s\n  - binary: %s\n",
		fakeBinary(t, dir, "stubborn", behaveIgnoreTerm), fakeBinary(t, dir, "polite", behaveOK)))
	stop := runDaemon(t, cfg)
	var h schemas.Host
	waitFor(t, "both running", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "stubborn", schemas.InstanceRunning, 1) && allIn(h, "polite", schemas.InstanceRunning, 1)
	})
	pids := []int{instances(h, "stubborn")[0].PID, instances(h, "polite")[0].PID}
	stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d outlived hostd's stop", pid)
		}
	}
	if h, _ = b.host(t, "testhost"); h.State != schemas.HostStopped {
		t.Errorf("host state after stop: %s", h.State)
	}
}

// kill -9 of hostd leaves no plugin behind; the broker marks the host
// LOST; a new hostd on the same state dir runs exactly its instances.
func TestKill9Hostd(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hostd.yaml")
	writeConfig(t, cfg, baseConfig(b, dir)+fmt.Sprintf("plugins:\n  - binary: %s\n    instances: 2\n", fakeBinary(t, dir, "orphan", behaveOK)))
	startHostdProcess := func() *exec.Cmd {
		self, _ := os.Executable()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), hostdEnv+"="+cfg)
		cmd.Stderr = testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			}
		})
		return cmd
	}
	proc := startHostdProcess()
	var h schemas.Host
	waitFor(t, "two instances running", func() bool {
		h, _ = b.host(t, "testhost")
		return allIn(h, "orphan", schemas.InstanceRunning, 2)
	})
	var pids []int
	for _, in := range instances(h, "orphan") {
		pids = append(pids, in.PID)
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	waitFor(t, "no instance left", func() bool { return !alive(pids[0]) && !alive(pids[1]) })
	waitFor(t, "host LOST", func() bool {
		h, _ = b.host(t, "testhost")
		return h.State == schemas.HostLost && allIn(h, "orphan", schemas.InstanceLost, 2)
	})

	startHostdProcess()
	waitFor(t, "two new instances", func() bool {
		h, _ = b.host(t, "testhost")
		return h.State == schemas.HostUp && allIn(h, "orphan", schemas.InstanceRunning, 2)
	})
	// Exactly two answer: no duplicate from the first hostd.
	sub, _ := b.nc.SubscribeSync(b.nc.NewRespInbox())
	_ = b.nc.PublishRequest(wire.PingSubject(wire.PluginService("orphan")), sub.Subject, nil)
	answers := 0
	for {
		if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
			break
		}
		answers++
	}
	if answers != 2 {
		t.Errorf("%d instances answer PING, want 2", answers)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
