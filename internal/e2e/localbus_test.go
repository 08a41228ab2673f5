package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// localBus is `make run` in a test: bin/localbus with the real
// deployments/local/hostd.yaml, on free ports and a temp data dir.
type localBus struct {
	bus
	sink     string
	proc     *proc
	parent   *exec.Cmd // the process localbus runs under, when the test made one
	dataDir  string
	children func() []int
}

// startLocalBus starts localbus (directly, or under a shell that plays
// make when underParent is set) and waits for its banner.
func startLocalBus(t *testing.T, underParent bool) *localBus {
	t.Helper()
	bin := build(t)
	dataDir := t.TempDir()
	lb := &localBus{bus: bus{bin: bin, httpAddr: freeAddr(t), dataDir: dataDir}, sink: freeAddr(t), dataDir: dataDir}
	listen := freeAddr(t)
	lb.natsURL = "nats://" + listen
	env := []string{"BIN=" + bin, "PLUGBUS_LISTEN=" + listen, "PLUGBUS_HTTP=" + lb.httpAddr, "SINK=" + lb.sink,
		"PLUGBUS_DATA_DIR=" + lb.dataDir, "PLUGBUS_HOSTD_CONFIG=" + filepath.Join(repoRoot(t), "deployments/local/hostd.yaml")}
	if underParent {
		// A parent that does not exec localbus, as make does not.
		sh := exec.Command("bash", "-c", filepath.Join(bin, "localbus")+"; echo localbus exited")
		out := &syncBuffer{}
		sh.Stdout, sh.Stderr = out, out
		sh.Env = append(os.Environ(), env...)
		if err := sh.Start(); err != nil {
			t.Fatal(err)
		}
		lb.parent = sh
		lb.proc = &proc{name: "localbus (under bash)", cmd: sh, out: out, done: make(chan error, 1)}
		go func() { lb.proc.done <- sh.Wait() }()
		t.Cleanup(func() {
			if sh.ProcessState == nil {
				_ = sh.Process.Kill()
				<-lb.proc.done
			}
			if t.Failed() {
				t.Logf("--- localbus output ---\n%s", out.String())
			}
		})
	} else {
		p := &proc{name: "localbus", cmd: exec.Command(filepath.Join(bin, "localbus")), out: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		p.cmd.Env = append(os.Environ(), env...)
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-p.done:
				case <-time.After(60 * time.Second):
					_ = p.cmd.Process.Kill()
				}
			}
			if t.Failed() {
				t.Logf("--- localbus output ---\n%s", p.out.String())
			}
		})
		lb.proc = p
	}
	waitFor(t, "the make run banner", func() bool { return strings.Contains(lb.proc.out.String(), "plugbus is running") })
	return lb
}

// host reads the local host's record with busctl.
func (lb *localBus) host(t *testing.T) schemas.Host {
	t.Helper()
	var h schemas.Host
	out := lb.mustBusctl(t, "hosts", "get", "local", "-o", "json")
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("hosts get -o json: %v\n%s", err, out)
	}
	return h
}

func instanceOf(h schemas.Host, plugin string) (schemas.PluginInstance, bool) {
	for _, in := range h.Plugins {
		if in.Plugin == plugin {
			return in, true
		}
	}
	return schemas.PluginInstance{}, false
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// processTree returns the pids of every live descendant of pid.
func processTree(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	parents := map[int][]int{}
	for _, e := range entries {
		var p int
		if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		f := strings.Fields(rest)
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		var ppid int
		fmt.Sscanf(f[1], "%d", &ppid)
		parents[ppid] = append(parents[ppid], p)
	}
	var walk func(int)
	walk = func(p int) {
		for _, c := range parents[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

func portHeld(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestMakeRun is issue 8's "done means" with the real binaries: hosts ls
// shows every sample plugin running with its pid; a plugin killed with -9
// is back with a new pid and one more restart; disable stops it and
// enable brings it back; its logs are readable; and SIGTERM of the
// process that plays make leaves no process and no port behind.
func TestMakeRun(t *testing.T) {
	lb := startLocalBus(t, true)

	var hosts schemas.HostListResponse
	if err := json.Unmarshal([]byte(lb.mustBusctl(t, "hosts", "ls", "-o", "json")), &hosts); err != nil {
		t.Fatal(err)
	}
	if len(hosts.Hosts) != 1 || hosts.Hosts[0].Name != "local" || hosts.Hosts[0].State != schemas.HostUp {
		t.Fatalf("hosts: %+v", hosts)
	}
	for _, name := range []string{"incrementer", "job-policy", "notify-webhook"} {
		in, ok := instanceOf(hosts.Hosts[0], name)
		if !ok || in.State != schemas.InstanceRunning || !pidAlive(in.PID) {
			t.Errorf("%s: %+v, want RUNNING with a live pid", name, in)
		}
	}

	old, _ := instanceOf(lb.host(t), "incrementer")
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "incrementer back with a new pid", func() bool {
		in, ok := instanceOf(lb.host(t), "incrementer")
		return ok && in.State == schemas.InstanceRunning && in.PID != old.PID && in.Restarts == old.Restarts+1 && pidAlive(in.PID)
	})
	out := lb.mustBusctl(t, "machine", "action", "m1", "increment", "-o", "json")
	if !strings.Contains(out, `"plugin": "incrementer"`) {
		t.Errorf("action after the restart: %s", out)
	}

	cur, _ := instanceOf(lb.host(t), "incrementer")
	lb.mustBusctl(t, "plugins", "disable", "incrementer", "--host", "local")
	waitFor(t, "incrementer disabled and gone", func() bool {
		in, _ := instanceOf(lb.host(t), "incrementer")
		return in.State == schemas.InstanceDisabled && !pidAlive(cur.PID)
	})
	lb.mustBusctl(t, "plugins", "enable", "incrementer", "--host", "local")
	waitFor(t, "incrementer running again", func() bool {
		in, _ := instanceOf(lb.host(t), "incrementer")
		return in.State == schemas.InstanceRunning && pidAlive(in.PID)
	})

	waitFor(t, "incrementer's log lines", func() bool {
		out, _, code := lb.busctl(t, "plugins", "logs", "incrementer")
		return code == 0 && strings.Contains(out, "plugin ready")
	})

	pids := append([]int{lb.parent.Process.Pid}, processTree(lb.parent.Process.Pid)...)
	if len(pids) < 6 {
		t.Fatalf("process tree under make: %v, want localbus, broker, sink, hostd and 3 plugins", pids)
	}
	if err := lb.parent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-lb.proc.done
	waitFor(t, "every process of make run gone", func() bool {
		for _, p := range pids {
			if pidAlive(p) {
				return false
			}
		}
		return true
	})
	for _, addr := range []string{strings.TrimPrefix(lb.natsURL, "nats://"), lb.httpAddr, lb.sink} {
		if portHeld(addr) {
			t.Errorf("%s still held after make run stopped", addr)
		}
	}
}

// Stopping the broker (or hostd) stops the whole local bus, and says which
// stopped.
func TestMakeRunStopsWhenAPartStops(t *testing.T) {
	lb := startLocalBus(t, false)
	pids := processTree(lb.proc.cmd.Process.Pid)
	var broker int
	for _, p := range pids {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.HasPrefix(string(b), filepath.Join(lb.bin, "broker")) {
			broker = p
		}
	}
	if broker == 0 {
		t.Fatalf("no broker among %v", pids)
	}
	if err := syscall.Kill(broker, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lb.proc.done:
	case <-time.After(90 * time.Second):
		t.Fatal("localbus did not stop after its broker stopped")
	}
	if out := lb.proc.out.String(); !strings.Contains(out, "broker stopped") || !strings.Contains(out, "stopping the rest") {
		t.Errorf("localbus does not say which part stopped:\n%s", out)
	}
	waitFor(t, "every process gone", func() bool {
		for _, p := range pids {
			if pidAlive(p) {
				return false
			}
		}
		return true
	})
}
