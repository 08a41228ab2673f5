package supervisor

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts the child in its own process group (so signals reach
// everything it started) and has the kernel SIGKILL it when the supervisor
// dies, even by kill -9. Pdeathsig is tied to the OS thread that started the
// child; Go only ends threads of goroutines that exit while locked with
// runtime.LockOSThread, and the supervisor never locks one.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// processBinary returns the executable of a running process: the target of
// /proc/PID/exe (without the " (deleted)" of a replaced binary), or argv[0]
// from /proc/PID/cmdline when exe cannot be read (another user's process).
func processBinary(pid int) (string, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(dir + "/exe")
	if err == nil {
		return strings.TrimSuffix(exe, " (deleted)"), nil
	}
	cmdline, cerr := os.ReadFile(dir + "/cmdline")
	if cerr != nil {
		return "", err
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if len(argv0) == 0 {
		return "", err
	}
	return string(argv0), nil
}

// processGone reports whether pid no longer runs: it does not exist or is a
// zombie waiting to be reaped.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] == 'Z' || stat[i+2] == 'X'
	}
	return false
}
