// Package e2e drives the real binaries end to end: bin/broker on its
// embedded NATS, the sample plugins as processes, and busctl as a user
// would run it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// build compiles the binaries once per test run.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "plugbus-e2e-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		for _, pkg := range []string{"./cmd/broker", "./cmd/busctl", "./cmd/hostd", "./cmd/localbus", "./cmd/webhook-sink", "./plugins/incrementer", "./plugins/notify-webhook", "./plugins/job-policy"} {
			out := filepath.Join(binDir, filepath.Base(pkg))
			if strings.HasPrefix(pkg, "./plugins/") {
				out = filepath.Join(binDir, "plugins", filepath.Base(pkg)) // as make build lays them out
			}
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Every binary says which plugbus it is.
func TestVersions(t *testing.T) {
	bin := build(t)
	for name, want := range map[string]string{
		"broker": "broker " + version.Release + " (plugbus ", "busctl": "busctl " + version.Release + " (plugbus ",
		"hostd": "hostd " + version.Release + " (plugbus ", "plugins/incrementer": "incrementer 1.0.0 (plugbus ",
	} {
		out, err := exec.Command(filepath.Join(bin, name), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version = %q (%v), want it to start with %q", name, out, err, want)
		}
	}
}

// freeAddr is a free loopback address for a process started (and maybe
// restarted) on it: testnats.FreePort says why it is not ":0".
func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testnats.FreePort(t))
}

// proc is a started binary whose output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer = testnats.SyncBuffer

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin), cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "NATS_URL=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", p.name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit error (bounded wait).
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("%s did not stop within 30s of SIGTERM", p.name)
		return nil
	}
}

type bus struct {
	bin, natsURL, httpAddr string
	// dataDir is the broker's: busctl finds the local admin's credentials
	// there, as it does in a checkout after make run.
	dataDir string
	// creds, when set, is passed to busctl as --creds.
	creds string
}

// busctl runs busctl and returns stdout, stderr and the exit code.
func (b *bus) busctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	global := []string{"--server", b.natsURL}
	if b.creds != "" {
		global = append(global, "--creds", b.creds)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, "busctl"), append(global, args...)...)
	cmd.Env = append(os.Environ(), "PLUGBUS_DATA_DIR="+b.dataDir, "NATS_CREDS=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("busctl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func (b *bus) mustBusctl(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := b.busctl(t, args...)
	if code != 0 {
		t.Fatalf("busctl %v exited %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startBus(t *testing.T) (*bus, *proc) {
	bin := build(t)
	b := &bus{bin: bin, httpAddr: freeAddr(t), dataDir: t.TempDir()}
	listen := freeAddr(t)
	b.natsURL = "nats://" + listen
	broker := start(t, filepath.Join(bin, "broker"), "--data-dir", b.dataDir, "--listen", listen,
		"--http", b.httpAddr, "--log-format", "json", "--heartbeat-interval", "1s")
	waitFor(t, "broker /healthz", func() bool {
		resp, err := http.Get("http://" + b.httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b, broker
}

// pluginCreds issues a plugin's credentials with busctl, as an admin
// does, and returns the file.
func (b *bus) pluginCreds(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".creds")
	b.mustBusctl(t, "plugins", "creds", name, "--out", path)
	return path
}

func (b *bus) waitActive(t *testing.T, names ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%v ACTIVE", names), func() bool {
		out, _, code := b.busctl(t, "plugins", "ls", "-o", "json")
		if code != 0 {
			return false
		}
		var list schemas.PluginListResponse
		if json.Unmarshal([]byte(out), &list) != nil {
			return false
		}
		active := map[string]bool{}
		for _, p := range list.Plugins {
			active[p.Name] = p.State == schemas.StateActive
		}
		for _, n := range names {
			if !active[n] {
				return false
			}
		}
		return true
	})
}

// TestDoneMeansPath is the README walkthrough with real binaries: an
// increment action (1, then 3 with step 2), a job deploy whose event
// busctl events tail prints as a CloudEvent, an alert POSTed by
// notify-webhook, and a clean SIGTERM shutdown.
func TestDoneMeansPath(t *testing.T) {
	b, broker := startBus(t)

	var hookMu sync.Mutex
	var posts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &m)
		hookMu.Lock()
		posts = append(posts, m)
		hookMu.Unlock()
	}))
	defer hook.Close()

	inc := start(t, filepath.Join(b.bin, "plugins", "incrementer"), "listen", "--server", b.natsURL, "--log-format", "json",
		"--creds", b.pluginCreds(t, "incrementer"))
	nw := start(t, filepath.Join(b.bin, "plugins", "notify-webhook"), "listen", "--server", b.natsURL, "--log-format", "json",
		"--creds", b.pluginCreds(t, "notify-webhook"),
		"--config", "url="+hook.URL)
	b.waitActive(t, "incrementer", "notify-webhook")

	value := func(out string) float64 {
		t.Helper()
		var resp schemas.MachineActionResponse
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("action output is not a MachineActionResponse: %v\n%s", err, out)
		}
		var res struct {
			Value float64 `json:"value"`
		}
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			t.Fatalf("result: %v\n%s", err, out)
		}
		return res.Value
	}
	if v := value(b.mustBusctl(t, "machine", "action", "m1", "increment", "-o", "json")); v != 1 {
		t.Fatalf("first increment: %v, want 1", v)
	}
	if v := value(b.mustBusctl(t, "machine", "action", "m1", "increment", "--param", "incrementer/step=2", "-o", "json")); v != 3 {
		t.Fatalf("increment by 2: %v, want 3", v)
	}

	// A missing required param: non-zero exit, the param named on stderr.
	_, errOut, code := b.busctl(t, "machine", "action", "m1", "reset_count")
	if code == 0 || !strings.Contains(errOut, "incrementer/touched") {
		t.Fatalf("reset_count without its param: exit %d, stderr %q", code, errOut)
	}

	b.mustBusctl(t, "job", "deploy", "demo", "--version", "1", "--image", "nginx")
	out := b.mustBusctl(t, "events", "tail", "--count", "1", "-o", "json")
	var ev event.Event
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &ev); err != nil {
		t.Fatalf("events tail output is not one CloudEvent: %v\n%s", err, out)
	}
	if ev.Type() != schemas.TypeJobDeployed || ev.DataSchema() != schemas.EventSchemaID(schemas.TypeJobDeployed) {
		t.Fatalf("last event: %s", ev)
	}
	var jd schemas.JobDeployedData
	if err := ev.DataAs(&jd); err != nil || jd.Name != "demo" || jd.Image != "nginx" {
		t.Fatalf("event data: %+v %v", jd, err)
	}

	b.mustBusctl(t, "alert", "fire", "--severity", "critical", "--summary", "disk full", "--label", "host=m1")
	waitFor(t, "webhook POST", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(posts) > 0
	})
	hookMu.Lock()
	text, _ := posts[0]["text"].(string)
	hookMu.Unlock()
	if !strings.Contains(text, "disk full") {
		t.Fatalf("webhook message does not carry the summary: %v", posts[0])
	}

	for _, p := range []*proc{inc, nw, broker} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0", p.name, err)
		}
	}
}

// TestHookChainDoneMeans is the hook-chain walkthrough with real binaries:
// a deploy passes job-policy and gets its env, the allow-list is narrowed
// with busctl plugins config, a deploy of another registry's image is
// refused with job-policy's reason, and hooks ls shows the chain in run
// order.
func TestHookChainDoneMeans(t *testing.T) {
	b, broker := startBus(t)
	policy := start(t, filepath.Join(b.bin, "plugins", "job-policy"), "listen", "--server", b.natsURL, "--log-format", "json",
		"--creds", b.pluginCreds(t, "job-policy"),
		"--config", `allowed_images=["*"]`, "--config", `env={"PLUGBUS_MANAGED":"true"}`)
	b.waitActive(t, "job-policy")

	out := b.mustBusctl(t, "job", "deploy", "web", "--version", "1", "--image", "registry.internal/web:1", "-o", "json")
	var jr schemas.JobResponse
	if err := json.Unmarshal([]byte(out), &jr); err != nil {
		t.Fatalf("deploy output: %v\n%s", err, out)
	}
	if jr.Job.Env["PLUGBUS_MANAGED"] != "true" {
		t.Fatalf("env from job-policy missing: %+v", jr.Job.Env)
	}
	if len(jr.Chains) != 2 || jr.Chains[0].Hook != schemas.HookJobPreDeploy || jr.Chains[1].Hook != schemas.HookJobRuntimeEnv ||
		jr.Chains[0].Steps[0].Plugin != "job-policy" || jr.Chains[0].Outcome != schemas.ChainCompleted {
		t.Fatalf("chain records: %+v", jr.Chains)
	}

	b.mustBusctl(t, "plugins", "config", "job-policy", "--set", "allowed_images=registry.internal/*")
	stdout, stderr, code := b.busctl(t, "job", "deploy", "evil", "--version", "1", "--image", "docker.io/evil:latest")
	if code == 0 || !strings.Contains(stderr, `docker.io/evil:latest`) || !strings.Contains(stderr, "registry.internal/*") ||
		!strings.Contains(stderr, "job-policy") {
		t.Fatalf("deploy of a refused image: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	b.mustBusctl(t, "job", "deploy", "web", "--version", "2", "--image", "registry.internal/web:2")

	out = b.mustBusctl(t, "hooks", "ls", "job.pre_deploy", "-o", "json")
	var hl schemas.HookListResponse
	if err := json.Unmarshal([]byte(out), &hl); err != nil {
		t.Fatal(err)
	}
	if len(hl.Chains) != 1 || len(hl.Chains[0].Steps) != 1 || hl.Chains[0].Steps[0].Plugin != "job-policy" ||
		hl.Chains[0].Steps[0].FailurePolicy != "fail" {
		t.Fatalf("hooks ls: %+v", hl)
	}
	for _, p := range []*proc{policy, broker} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0", p.name, err)
		}
	}
}
