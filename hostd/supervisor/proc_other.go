//go:build unix && !linux

package supervisor

import (
	"errors"
	"syscall"
)

// sysProcAttr puts the child in its own process group. Outside Linux there
// is no Pdeathsig: a child outlives a supervisor killed with kill -9, and
// ReapOrphans cannot identify it (see processBinary).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

var errNoProc = errors.New("cannot read a process's executable on this system")

// processBinary needs /proc.
func processBinary(int) (string, error) { return "", errNoProc }

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
