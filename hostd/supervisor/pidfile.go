package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	pidfileExt = ".pid"
	tmpExt     = ".tmp"
	// reapWait bounds how long ReapOrphans waits for killed processes to
	// be gone.
	reapWait = 5 * time.Second
)

// writePidfile atomically writes "<pid>\n<binary>\n" to path.
func writePidfile(path string, pid int, binary string) error {
	tmp := path + tmpExt
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"+binary+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write pidfile: %w", err)
	}
	return nil
}

// readPidfile parses a file written by writePidfile.
func readPidfile(path string) (pid int, binary string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "", err
	}
	p, bin, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), "\n")
	pid, perr := strconv.Atoi(p)
	if !ok || perr != nil || pid <= 0 || bin == "" {
		return 0, "", fmt.Errorf("pidfile %s: want a pid and a binary on two lines", path)
	}
	return pid, bin, nil
}

// ReapOrphans cleans a state directory (see WithStateDir) left by
// supervisors that are gone, e.g. a hostd that was killed: for each
// pidfile whose process is still alive and still runs the recorded binary,
// it sends SIGKILL to the process's group and waits (up to 5s) until it is
// gone. Pidfiles are removed, except those whose process could not be
// identified or killed, which the error names. A pidfile whose pid now
// belongs to another binary is only removed. A missing dir is not an
// error.
//
// Call it before starting supervisors on dir: it cannot tell a live
// supervisor's child from an orphan. (Run does the same for its own
// pidfile before its first start.)
func ReapOrphans(stateDir string) (killed []int, err error) {
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reap orphans: %w", err)
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(stateDir, e.Name())
		switch {
		case !e.Type().IsRegular():
		case strings.HasSuffix(e.Name(), pidfileExt+tmpExt):
			_ = os.Remove(path) // a write cut short
		case strings.HasSuffix(e.Name(), pidfileExt):
			pid, err := reapPidfile(path)
			if err != nil {
				errs = append(errs, err)
			}
			if pid != 0 {
				killed = append(killed, pid)
			}
		}
	}
	if err := awaitGone(killed, reapWait); err != nil {
		errs = append(errs, err)
	}
	return killed, errors.Join(errs...)
}

// reapPidfile kills the process of one pidfile if it is still the recorded
// binary, and removes the file. It returns the pid it killed (0 if none).
// It does not wait for the process to be gone.
func reapPidfile(path string) (int, error) {
	pid, binary, err := readPidfile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil { // unreadable content: nothing to kill
		return 0, removePidfile(path)
	}
	if processGone(pid) {
		return 0, removePidfile(path)
	}
	running, err := processBinary(pid)
	if err != nil {
		if processGone(pid) {
			return 0, removePidfile(path)
		}
		return 0, fmt.Errorf("reap pid %d from %s: %w", pid, path, err)
	}
	if running != binary {
		return 0, removePidfile(path) // the pid was reused
	}
	if err := killGroup(pid); err != nil && !errors.Is(err, syscall.ESRCH) {
		return 0, fmt.Errorf("reap pid %d from %s: %w", pid, path, err)
	}
	return pid, removePidfile(path)
}

// killGroup sends SIGKILL to pid's process group if pid leads one (as a
// supervised child does), to pid alone otherwise.
func killGroup(pid int) error {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		return syscall.Kill(-pid, syscall.SIGKILL)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

func removePidfile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pidfile: %w", err)
	}
	return nil
}

// awaitGone polls until every pid is gone, for at most limit.
func awaitGone(pids []int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("reap orphans: pid %d still alive %v after SIGKILL", pid, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}
