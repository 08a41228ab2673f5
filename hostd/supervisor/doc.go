// Package supervisor keeps one plugin process running for hostd: it starts
// the binary, passes its log lines on, restarts it by a policy when it
// exits, and stops it gracefully. hostd makes one Supervisor per plugin
// instance.
//
// # States
//
// A Supervisor is STOPPED until Run is called and after Run returns.
//
//	STOPPED  --Run-->  STARTING  --ready-->  RUNNING
//	STARTING/RUNNING  --child exits, not ready in time, readiness error-->  BACKOFF or FAILED
//	BACKOFF  --wait over, or Restart-->  STARTING
//	FAILED   --Restart-->  STARTING
//	STARTING/RUNNING  --Restart (graceful stop)-->  STARTING
//	any  --Run's context ends (graceful stop)-->  STOPPED
//
// STARTING lasts until the readiness function (WithReadiness) returns nil;
// without one a child is RUNNING as soon as it has been started. A child
// that is not ready within Spec.StartTimeout is stopped and the start counts
// as a failure with the reason "not ready within 30s" (for the default
// timeout). A binary that cannot be executed is a failure too, with no
// STARTING in between.
//
// # Restart policy
//
// Every exit that the supervisor did not ask for is a failure, whatever the
// exit code: a plugin is meant to run until it is stopped. After a failure
// the next start waits for an exponential backoff (cenkalti/backoff's
// ExponentialBackOff): by default 1s, doubling up to 30s, each wait spread
// by ±20% jitter and never over 30s. A child that had been RUNNING for the
// healthy period (60s) before it exited starts the backoff at 1s again. The
// time spent STARTING is not part of the backoff: the wait begins when the
// failed child is gone. Five failures within 60s put the instance in FAILED
// with the last exit status and stderr tail in its Status; it stays there
// until Restart is called or a new Run begins. Exits caused by the
// supervisor itself (stopping at the end of Run, Restart) are not failures.
// All of this runs on an injectable Clock (WithClock).
//
// # Processes
//
// The child runs in its own process group and, on Linux, with Pdeathsig
// SIGKILL, so it does not outlive the supervisor's process even when that
// is killed with kill -9. Stopping sends SIGTERM to the group, then SIGKILL
// after Spec.StopGrace; once the child is gone anything left in its group
// is killed too. With WithStateDir the supervisor keeps a pidfile while the
// child runs, and ReapOrphans kills the children that a killed supervisor
// left behind. The package works on Unix systems; Pdeathsig and
// ReapOrphans's process identification need Linux.
//
// # Logs
//
// Each line of the child's stdout and stderr becomes a Line. zerolog JSON
// lines keep their level, message and fields; other lines are raw text at
// info (stdout) or warn (stderr) level. Lines are cut at MaxLineBytes. Relog
// writes lines to a zerolog.Logger with plugin, instance and host fields.
package supervisor
