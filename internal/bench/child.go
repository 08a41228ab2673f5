package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// ChildNATSArg is the first argument that makes busbench serve as a bare
// nats-server child process (the raw side of the memory figures).
const ChildNATSArg = "child-nats"

// ServeChildNATS runs a nats-server configured like the broker's embedded
// one on addr with its store under dir, until SIGTERM or SIGINT.
func ServeChildNATS(addr, dir string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return err
	}
	s, err := startServerOn(dir, host, port)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// child is a process serving NATS for the scale case: the broker binary
// with its embedded server, or busbench as a bare nats-server.
type child struct {
	cmd  *exec.Cmd
	URL  string
	dir  string
	logf *os.File
	done chan struct{}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startChild(ctx context.Context, name string, args func(dir string, port, httpPort int) []string, ready func(url string, httpPort int) error) (*child, error) {
	dir, err := os.MkdirTemp("", "busbench-child-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "child.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args(dir, port, httpPort)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{cmd: cmd, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), dir: dir, logf: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ready(c.URL, httpPort)
		if err == nil {
			return c, nil
		}
		select {
		case <-c.done:
			c.Stop()
			return nil, fmt.Errorf("%s exited before it was ready: %v (log: %s)", name, err, c.tail())
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("%s not ready within 30s: %v (log: %s)", name, err, c.tail())
		}
	}
}

// startChildBroker runs the broker binary with its embedded server and
// waits until /healthz answers 200.
func startChildBroker(ctx context.Context, bin string) (*child, error) {
	c, err := startChild(ctx, bin, func(dir string, port, httpPort int) []string {
		return []string{"--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--log-format", "json", "--log-level", "info"}
	}, func(_ string, httpPort int) error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	setCreds(c.URL, brokerCreds(c.dir))
	return c, nil
}

// startChildNATS runs busbench itself as a bare nats-server.
func startChildNATS(ctx context.Context, self string) (*child, error) {
	return startChild(ctx, self, func(dir string, port, _ int) []string {
		return []string{ChildNATSArg, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-store", dir}
	}, func(url string, _ int) error {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	})
}

// RSS returns the child's resident set size in MiB.
func (c *child) RSS() (float64, error) {
	return rssOf(c.cmd.Process.Pid)
}

func rssOf(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb / 1024, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// sampleRSS samples the child's RSS every 20ms until stop is called and
// returns the peak.
func (c *child) sampleRSS() (stop func() float64) {
	var peak atomic.Uint64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	take := func() {
		if v, err := c.RSS(); err == nil {
			for {
				old := peak.Load()
				if uint64(v*1024) <= old || peak.CompareAndSwap(old, uint64(v*1024)) {
					break
				}
			}
		}
	}
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			take()
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	})
	return func() float64 {
		close(quit)
		wg.Wait()
		take()
		return float64(peak.Load()) / 1024
	}
}

func (c *child) tail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "child.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop terminates the child (SIGTERM, then SIGKILL after 10s) and removes
// its store.
func (c *child) Stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	_ = c.logf.Close()
	_ = os.RemoveAll(c.dir)
}

// brokerBinary returns the broker binary to run: cfg.BrokerBin when it
// exists, else one built into a temp dir with `go build`.
func (r *runner) brokerBinary(ctx context.Context) (string, func(), error) {
	if r.cfg.BrokerBin != "" {
		if st, err := os.Stat(r.cfg.BrokerBin); err == nil && !st.IsDir() {
			abs, _ := filepath.Abs(r.cfg.BrokerBin)
			return abs, func() {}, nil
		}
	}
	dir, err := os.MkdirTemp("", "busbench-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "broker")
	r.logf("building the broker (%s not found)", r.cfg.BrokerBin)
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/plugbus/plugbus/cmd/broker").CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build the broker: %v: %s", err, out)
	}
	return bin, func() { _ = os.RemoveAll(dir) }, nil
}
