package supervisor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The test binary is also the fake child: with helperEnv set,
// TestHelperProcess runs one of the helper modes instead of a test and
// exits (hashicorp/go-plugin's pattern).
const (
	helperEnv   = "PLUGBUS_SUPERVISOR_HELPER"
	stateDirEnv = "PLUGBUS_SUPERVISOR_HELPER_STATE_DIR"
)

// Helper modes.
const (
	modeCrash      = "crash"       // 30 stderr lines, exit 3 at once
	modeCrashLater = "crash-later" // runs a while, then exit 4
	modeHang       = "hang"        // never does anything
	modeNoisy      = "noisy"       // many log lines, then exit 0
	modeIgnoreTerm = "ignore-term" // ignores SIGTERM
	modeGraceful   = "graceful"    // exits 0 on SIGTERM
	modeServe      = "serve"       // runs until killed
	modeSpawn      = "spawn"       // starts a grandchild, runs until killed
	modeMini       = "mini"        // a supervisor of a serve child
)

const (
	noisyLines = 500 // of each kind, per stream
	longLine   = 100_000
	crashLines = 30
)

var noisyLevels = []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel, zerolog.WarnLevel, zerolog.ErrorLevel}

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return // a normal test run: nothing to do
	}
	os.Exit(helperMain(mode))
}

func helperMain(mode string) int {
	switch mode {
	case modeCrash:
		for i := range crashLines {
			fmt.Fprintf(os.Stderr, "crash line %d\n", i)
		}
		return 3
	case modeCrashLater:
		fmt.Println("started")
		time.Sleep(50 * time.Millisecond)
		fmt.Fprintln(os.Stderr, "giving up")
		return 4
	case modeHang:
		select {}
	case modeNoisy:
		out := zerolog.New(os.Stdout).With().Timestamp().Logger()
		errl := zerolog.New(os.Stderr).With().Timestamp().Logger()
		for i := range noisyLines {
			lv := noisyLevels[i%len(noisyLevels)]
			out.WithLevel(lv).Int("i", i).Str("k", "v").Dict("obj", zerolog.Dict().Bool("b", true)).Msg("json out")
			fmt.Fprintf(os.Stdout, "plain out %d\n", i)
			errl.WithLevel(lv).Int("i", i).Str("k", "w").Msg("json err")
			fmt.Fprintf(os.Stderr, "plain err %d\n", i)
		}
		fmt.Fprintln(os.Stdout, strings.Repeat("x", longLine))
		fmt.Fprintln(os.Stdout, "after long")
		fmt.Fprint(os.Stderr, "partial tail")
		return 0
	case modeIgnoreTerm:
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("armed")
		select {}
	case modeGraceful:
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("armed")
		<-c
		fmt.Fprintln(os.Stderr, "bye")
		return 0
	case modeServe:
		fmt.Println("serving")
		select {}
	case modeSpawn:
		cmd := helperCmd(modeServe)
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("grandchild %d\n", cmd.Process.Pid)
		select {}
	case modeMini:
		// Ready once the child has written its only line: from then on it
		// writes nothing, so nothing but Pdeathsig can end it (an early
		// write to a dead supervisor's pipe would kill it with SIGPIPE).
		serving := make(chan struct{})
		s, err := New(helperSpec(modeServe), WithStateDir(os.Getenv(stateDirEnv)),
			WithLines(func(l Line) {
				if l.Raw == "serving" {
					close(serving)
				}
			}),
			WithReadiness(func(ctx context.Context, pid int) error {
				select {
				case <-serving:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}),
			WithOnChange(func(st Status) {
				if st.State == StateRunning {
					fmt.Printf("child %d\n", st.PID)
				}
			}))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = s.Run(context.Background())
		return 1
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// self is the test binary.
func self() string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe
}

var helperArgs = []string{"-test.run=^TestHelperProcess$"}

// helperEnvFor selects mode. A race-enabled binary sleeps 1s at exit unless
// GORACE says otherwise; the children should exit as fast as real ones.
func helperEnvFor(mode string) []string {
	return []string{helperEnv + "=" + mode, "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
}

// helperSpec runs the test binary as a child in mode.
func helperSpec(mode string) Spec {
	return Spec{
		Plugin:   "helper",
		Instance: "1",
		Binary:   self(),
		Args:     helperArgs,
		Env:      helperEnvFor(mode),
	}
}

// helperCmd runs the test binary in mode outside any supervisor.
func helperCmd(mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(self(), helperArgs...)
	cmd.Env = append(append(os.Environ(), helperEnvFor(mode)...), env...)
	return cmd
}
