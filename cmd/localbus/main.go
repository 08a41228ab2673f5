// Command localbus runs the whole bus on this machine, as `make run` does:
// the broker on its embedded NATS, one hostd running the plugins of
// deployments/local/hostd.yaml, and the webhook sink notify-webhook posts
// to. It prints what to try, and stops everything when it gets SIGINT or
// SIGTERM, when its parent (make) dies, or when the broker, hostd or the
// sink stops: hostd first (which stops the plugins), then the sink, then
// the broker. A crashed plugin is hostd's business: it restarts it.
//
// Environment: PLUGBUS_LISTEN (NATS, 127.0.0.1:4222), PLUGBUS_HTTP
// (127.0.0.1:8080), PLUGBUS_DATA_DIR (./data), SINK (127.0.0.1:8099),
// PLUGBUS_HOSTD_CONFIG (deployments/local/hostd.yaml), BIN (bin).
package main

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
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/plugbus/plugbus/broker/dashboard/token"
	"github.com/plugbus/plugbus/hostd"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

func main() {
	// When make (our parent) dies, we get SIGTERM and stop everything.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0)
	if os.Getppid() == 1 {
		fmt.Fprintln(os.Stderr, "localbus: the process that started me is gone")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "localbus:", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// child is one process localbus started.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startChild(name string, args []string, extraEnv ...string) (*child, error) {
	c := &child{name: name, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = os.Stdout, os.Stderr
	c.cmd.Env = append(os.Environ(), extraEnv...)
	// Its own process group, so Ctrl-C reaches only localbus, which stops
	// the children in order; and SIGTERM should localbus die first.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run make build)", name, err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop sends SIGTERM and waits up to grace, then kills.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "localbus: %s did not stop within %s; killing it\n", c.name, grace)
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
}

func free(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is already in use: is another `make run` (or broker) running? stop it first", addr)
	}
	return ln.Close()
}

func run(ctx context.Context) error {
	bin := env("BIN", "bin")
	natsAddr := env("PLUGBUS_LISTEN", "127.0.0.1:4222")
	httpAddr := env("PLUGBUS_HTTP", "127.0.0.1:8080")
	sink := env("SINK", "127.0.0.1:8099")
	dataDir, err := filepath.Abs(env("PLUGBUS_DATA_DIR", "data"))
	if err != nil {
		return err
	}
	hostdConfig := env("PLUGBUS_HOSTD_CONFIG", "deployments/local/hostd.yaml")
	natsURL := "nats://" + natsAddr
	for _, a := range []string{natsAddr, httpAddr, sink} {
		if err := free(a); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}

	var children []*child
	stopAll := func() {
		fmt.Println("\nstopping plugbus…")
		for i := len(children) - 1; i >= 0; i-- {
			children[i].stop(45 * time.Second)
		}
		fmt.Println("stopped.")
	}
	broker, err := startChild("broker", []string{filepath.Join(bin, "broker"), "--listen", natsAddr, "--http", httpAddr, "--data-dir", dataDir})
	if err != nil {
		return err
	}
	children = append(children, broker)
	if err := waitHealthy(ctx, broker, httpAddr); err != nil {
		stopAll()
		return err
	}
	sinkProc, err := startChild("webhook-sink", []string{filepath.Join(bin, "webhook-sink"), "--listen", sink})
	if err != nil {
		stopAll()
		return err
	}
	children = append(children, sinkProc)
	absBin, err := filepath.Abs(bin)
	if err != nil {
		stopAll()
		return err
	}
	hostEnv := []string{"NATS_URL=" + natsURL, "SINK=" + sink, "PLUGBUS_DATA_DIR=" + dataDir, "PLUGBUS_BIN=" + absBin}
	hostCreds, err := issueHostCreds(ctx, natsURL, dataDir, hostdConfig, hostEnv)
	if err != nil {
		stopAll()
		return err
	}
	hostd, err := startChild("hostd", []string{filepath.Join(bin, "hostd"), "--config", hostdConfig},
		append(hostEnv, "PLUGBUS_HOST_CREDS="+hostCreds)...)
	if err != nil {
		stopAll()
		return err
	}
	children = append(children, hostd)

	host, plugins, err := waitPlugins(ctx, natsURL, dataDir, hostd)
	if err != nil {
		stopAll()
		return err
	}
	login, err := dashboardLogin(dataDir, httpAddr)
	if err != nil {
		stopAll()
		return err
	}
	banner(natsURL, httpAddr, sink, dataDir, hostdConfig, host, plugins, login)

	select {
	case <-ctx.Done():
		stopAll()
		return nil
	case <-broker.done:
		return unexpected(broker, stopAll)
	case <-hostd.done:
		return unexpected(hostd, stopAll)
	case <-sinkProc.done:
		return unexpected(sinkProc, stopAll)
	}
}

// adminConn connects as the local admin, whose credentials the embedded
// broker wrote to the data dir.
func adminConn(natsURL, dataDir string) (*nats.Conn, error) {
	nc, err := nats.Connect(natsURL, nats.UserCredentials(filepath.Join(dataDir, "creds", "admin.creds")))
	if err != nil {
		return nil, fmt.Errorf("connect to %s as the local admin: %w", natsURL, err)
	}
	return nc, nil
}

// issueHostCreds issues the local host's credentials, with every plugin
// placed on it, and writes them next to the admin's.
func issueHostCreds(ctx context.Context, natsURL, dataDir, hostdConfig string, env []string) (string, error) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		_ = os.Setenv(k, v) // the config's ${VAR} read them
	}
	cfg, err := hostd.LoadConfig(hostdConfig)
	if err != nil {
		return "", err
	}
	nc, err := adminConn(natsURL, dataDir)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	res, err := client.New(nc).HostCreds(ctx, cfg.Host, []string{"*"})
	if err != nil {
		return "", fmt.Errorf("issue the credentials of host %s: %w", cfg.Host, err)
	}
	path := filepath.Join(dataDir, "creds", "host-"+cfg.Host+".creds")
	if err := os.WriteFile(path, []byte(res.Creds), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

func unexpected(c *child, stopAll func()) error {
	status := "exited"
	if c.err != nil {
		status = c.err.Error()
	}
	fmt.Fprintf(os.Stderr, "localbus: %s stopped (%s); stopping the rest\n", c.name, status)
	stopAll()
	return fmt.Errorf("%s stopped: %s", c.name, status)
}

func waitHealthy(ctx context.Context, broker *child, httpAddr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-broker.done:
			return errors.New("the broker exited; see its log above")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the broker did not become healthy on %s within 60s", httpAddr)
}

// waitPlugins waits (bounded) until hostd reports its host with every
// plugin instance RUNNING, and returns the host and the plugins.
func waitPlugins(ctx context.Context, natsURL, dataDir string, hostd *child) (string, []string, error) {
	nc, err := adminConn(natsURL, dataDir)
	if err != nil {
		return "", nil, err
	}
	defer nc.Close()
	c := client.New(nc)
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		hosts, err := c.ListHosts(ctx, schemas.HostUp)
		if err == nil && len(hosts) > 0 {
			h := hosts[0]
			var names, notRunning []string
			for _, in := range h.Plugins {
				names = append(names, in.Plugin)
				if in.State != schemas.InstanceRunning {
					notRunning = append(notRunning, in.Plugin+" "+string(in.State))
				}
			}
			if len(names) > 0 && len(notRunning) == 0 {
				return h.Name, names, nil
			}
			last = strings.Join(notRunning, ", ")
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-hostd.done:
			return "", nil, errors.New("hostd exited; see its log above")
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", nil, fmt.Errorf("the plugins are not all running after 90s (%s): see hostd's log above", last)
}

// dashboardLogin returns a URL that logs a browser in to the dashboard as
// the local admin (busctl dashboard login makes the same).
func dashboardLogin(dataDir, httpAddr string) (string, error) {
	creds, err := os.ReadFile(filepath.Join(dataDir, "creds", "admin.creds"))
	if err != nil {
		return "", fmt.Errorf("the local admin's credentials: %w", err)
	}
	tok, err := token.New(creds, token.DefaultTTL, time.Now())
	if err != nil {
		return "", err
	}
	return token.LoginURL("http://"+httpAddr, tok), nil
}

func banner(natsURL, httpAddr, sink, dataDir, hostdConfig, host string, plugins []string, login string) {
	server := ""
	if natsURL != "nats://127.0.0.1:4222" {
		server = " --server " + natsURL
	}
	b := "bin/busctl" + server
	fmt.Printf(`
  plugbus is running: NATS %s (embedded JetStream, data in %s), HTTP http://%s
  hostd runs on host %q the plugins of %s: %s
  (webhook sink on http://%s prints what notify-webhook sends)

  Dashboard: http://%[3]s/ (read-only for anyone who reaches it)
  To act as the admin there (verify, enable, disable, replay), open, within %[10]s:
    %[9]s
  (%[8]s dashboard login prints a new one)

  Try, in another terminal:
    %[8]s plugins ls
    %[8]s hosts ls
    %[8]s machine action m1 increment -o json
    %[8]s job deploy demo --version 1 --image nginx
    %[8]s events tail --count 5
    %[8]s alert fire --severity critical --summary "disk full" --label host=m1
    %[8]s plugins logs notify-webhook
    curl -s http://%[3]s/metrics | grep plugbus_
    Alertmanager's webhook (or curl) → http://%[3]s/v1/alerts   (docs/observability.md)

  Ctrl-C stops everything.

`, natsURL, dataDir, httpAddr, host, hostdConfig, strings.Join(plugins, " "), sink, b, login, fmt.Sprintf("%gh", token.DefaultTTL.Hours()))
}
