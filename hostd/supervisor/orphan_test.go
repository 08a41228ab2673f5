package supervisor

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A supervisor killed with kill -9 takes its child with it (Pdeathsig),
// and its leftover pidfile is cleaned by ReapOrphans.
func TestKill9SupervisorTakesChild(t *testing.T) {
	dir := t.TempDir()
	mini := helperCmd(modeMini, stateDirEnv+"="+dir)
	out, err := mini.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mini.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mini.Process.Kill(); _ = mini.Wait() })
	child := 0
	sc := bufio.NewScanner(out)
	for child == 0 && sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "child "); ok {
			child, _ = strconv.Atoi(n)
		}
	}
	if child == 0 {
		t.Fatalf("the mini supervisor reported no child: %v", sc.Err())
	}
	if processGone(child) {
		t.Fatal("child not running")
	}
	pidfile := filepath.Join(dir, "helper-1.pid")
	if pid, _, err := readPidfile(pidfile); err != nil || pid != child {
		t.Fatalf("pidfile: %d %v", pid, err)
	}

	if err := mini.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = mini.Wait()
	waitGone(t, child)

	killed, err := ReapOrphans(dir)
	if err != nil || len(killed) != 0 {
		t.Fatalf("reap: killed %v, err %v", killed, err)
	}
	if _, err := os.Stat(pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale pidfile kept: %v", err)
	}
}

// ReapOrphans kills a leftover child, leaves alone a process whose pid is
// recorded for another binary, and removes every pidfile.
func TestReapOrphans(t *testing.T) {
	dir := t.TempDir()
	start := func() *exec.Cmd {
		cmd := helperCmd(modeServe)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as a supervised child
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	orphan := start()
	other := start()
	dead := helperCmd(modeCrash)
	if err := dead.Run(); err == nil {
		t.Fatal("crash helper exited 0")
	}
	write := func(name string, pid int, binary string) {
		if err := writePidfile(filepath.Join(dir, name), pid, binary); err != nil {
			t.Fatal(err)
		}
	}
	write("orphan-1.pid", orphan.Process.Pid, self())
	write("other-1.pid", other.Process.Pid, "/usr/lib/plugbus/plugins/another")
	write("dead-1.pid", dead.Process.Pid, self())
	if err := os.WriteFile(filepath.Join(dir, "junk-1.pid"), []byte("not a pidfile"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}

	killed, err := ReapOrphans(dir)
	if err != nil || !slices.Equal(killed, []int{orphan.Process.Pid}) {
		t.Fatalf("killed %v (want [%d]), err %v", killed, orphan.Process.Pid, err)
	}
	waitGone(t, orphan.Process.Pid)
	var ee *exec.ExitError
	if err := orphan.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("orphan: %v", err)
	}
	if processGone(other.Process.Pid) {
		t.Fatal("a process of another binary was killed")
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"notes.txt"}) {
		t.Fatalf("left in the state dir: %v", names)
	}
	if killed, err := ReapOrphans(filepath.Join(dir, "missing")); err != nil || killed != nil {
		t.Fatalf("missing dir: %v %v", killed, err)
	}
}

// Run reaps its own instance's leftover child before starting a new one.
func TestRunReapsOwnOrphan(t *testing.T) {
	dir := t.TempDir()
	old := helperCmd(modeServe)
	old.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Process.Kill(); _ = old.Wait() })
	if err := writePidfile(filepath.Join(dir, "helper-1.pid"), old.Process.Pid, self()); err != nil {
		t.Fatal(err)
	}
	h := run(t, helperSpec(modeServe), WithStateDir(dir))
	st := h.waitState(StateRunning)
	if st.PID == old.Process.Pid {
		t.Fatal("same pid")
	}
	waitGone(t, old.Process.Pid)
	var ee *exec.ExitError
	if err := old.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("old child: %v", err)
	}
}
