package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// waitLimit bounds every wait for a condition in the suite.
const waitLimit = 2 * time.Minute

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// repoRoot is the module's root directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// build compiles the binaries the suite runs, once per test run:
// bin/broker, the notify-webhook plugin and the suite's hook plugin.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "plugbus-faults-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"./cmd/broker", "./plugins/notify-webhook", "./internal/faults/hookplugin"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, filepath.Base(pkg)), pkg)
			cmd.Dir = repoRoot()
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

// waitFor polls cond until it holds, for at most limit; no condition in
// the suite is a sleep.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// freeAddr is a free loopback address for a process started on it (and
// maybe restarted on it): testnats.FreePort says why it is not ":0".
func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testnats.FreePort(t))
}

// tail keeps the last max bytes written to it (a process's output, for
// failure reports) and hands every complete line to onLine.
type tail struct {
	mu     sync.Mutex
	buf    []byte
	max    int
	line   []byte
	onLine func(string)
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*w.max {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-w.max:]...)
	}
	if w.onLine != nil {
		w.line = append(w.line, p...)
		for {
			i := bytes.IndexByte(w.line, '\n')
			if i < 0 {
				break
			}
			w.onLine(string(w.line[:i]))
			w.line = w.line[i+1:]
		}
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.buf
	if len(b) > w.max {
		b = b[len(b)-w.max:]
	}
	return string(b)
}

// proc is a started binary.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
	err  error     // the exit error, once done is closed
	end  time.Time // when it exited, once done is closed
	// stdin writes to the process's standard input (the hook plugin
	// waits for lines there with HOOKPLUGIN_BLOCK=stdin).
	stdin io.WriteCloser
}

// startProc starts bin with args; onLine (may be nil) sees every line of
// its stdout and stderr. The process is killed when the test ends.
func startProc(t *testing.T, name, bin string, env []string, onLine func(string), args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &tail{max: 64 << 10, onLine: onLine}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), append([]string{"NATS_URL=", "NATS_CREDS=", "NATS_CONTEXT="}, env...)...)
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); p.end = time.Now(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s (pid %d) output, last part ---\n%s", p.name, p.pid(), p.out.String())
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit, at most limit, and returns its exit
// error.
func (p *proc) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		t.Fatalf("%s (pid %d) did not exit within %s", p.name, p.pid(), limit)
		return nil
	}
}

// kill9 is kill -9: the process gets no chance to clean up.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		t.Fatalf("kill -9 %s: %v", p.name, err)
	}
	_ = p.wait(t, 30*time.Second)
}

// term sends SIGTERM and returns at once.
func (p *proc) term(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
}

// rssKB is the process's resident set size (VmRSS) in kB.
func (p *proc) rssKB() (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, errors.New("no VmRSS line")
}

// bus is a broker process on its embedded NATS, with a data dir and ports
// that stay the same across restarts.
type bus struct {
	t                       *testing.T
	bin                     string
	dataDir, listen, httpAd string
	url                     string
	args                    []string
	broker                  *proc
	starts                  int

	adminOnce sync.Once
	adminNC   *nats.Conn
	adminC    *client.Client
	jsOnce    sync.Once
	js        jetstream.JetStream
}

// newBus starts a broker with args added to the suite's defaults.
func newBus(t *testing.T, args ...string) *bus {
	t.Helper()
	b := &bus{t: t, bin: build(t), dataDir: t.TempDir(), listen: freeAddr(t), httpAd: freeAddr(t), args: args}
	b.url = "nats://" + b.listen
	b.start(t)
	return b
}

// start starts the broker process (again) on the bus's data dir and
// ports and waits until it is healthy.
func (b *bus) start(t *testing.T) {
	t.Helper()
	b.starts++
	args := append([]string{"--data-dir", b.dataDir, "--listen", b.listen, "--http", b.httpAd,
		"--log-format", "json", "--log-level", "warn"}, b.args...)
	b.broker = startProc(t, fmt.Sprintf("broker#%d", b.starts), filepath.Join(b.bin, "broker"), nil, nil, args...)
	b.waitHealthy(t)
}

func (b *bus) healthy() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + b.httpAd + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (b *bus) waitHealthy(t *testing.T) {
	t.Helper()
	p := b.broker
	waitFor(t, "broker /healthz", waitLimit, func() bool {
		if p.exited() {
			t.Fatalf("%s exited while starting: %v\n%s", p.name, p.err, p.out.String())
		}
		return b.healthy()
	})
}

func (b *bus) adminCreds() string  { return filepath.Join(b.dataDir, broker.AdminCredsFile) }
func (b *bus) brokerCreds() string { return filepath.Join(b.dataDir, "auth", "broker.creds") }

// connect dials the bus with creds, reconnecting for ever (across broker
// restarts); closed when the test ends.
func (b *bus) connect(t *testing.T, creds string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	o := append([]nats.Option{nats.UserCredentials(creds), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)
	nc, err := nats.Connect(b.url, o...)
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// admin is an sdk/client with the admin's credentials.
func (b *bus) admin(t *testing.T) *client.Client {
	b.adminOnce.Do(func() {
		b.adminNC = b.connect(t, b.adminCreds())
		b.adminC = client.New(b.adminNC, client.WithRetryFor(30*time.Second))
	})
	return b.adminC
}

// jetstream is JetStream with the broker's own credentials, for the
// checker's reads and for publishing what no client is allowed to.
func (b *bus) jetstream(t *testing.T) jetstream.JetStream {
	b.jsOnce.Do(func() {
		js, err := jetstream.New(b.connect(t, b.brokerCreds()))
		if err != nil {
			t.Fatal(err)
		}
		b.js = js
	})
	return b.js
}

// pluginCreds issues a plugin's credentials through the API, as busctl
// plugins creds does, and writes them to a file.
func (b *bus) pluginCreds(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := b.admin(t).PluginCreds(ctx, name)
	if err != nil {
		t.Fatalf("creds for %s: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, []byte(resp.Creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// plugin is a plugin process with its own credentials.
type plugin struct {
	name, bin, creds string
	env, config      []string
	onLine           func(string)
	p                *proc
	starts           int
}

// startPlugin starts a plugin binary (under the suite's bin dir) with its
// own credentials and initial config, and waits until it is ACTIVE.
func (b *bus) startPlugin(t *testing.T, name, binName string, env []string, onLine func(string), config ...string) *plugin {
	t.Helper()
	pl := &plugin{name: name, bin: filepath.Join(b.bin, binName), creds: b.pluginCreds(t, name), env: env, config: config, onLine: onLine}
	b.restartPlugin(t, pl)
	return pl
}

// restartPlugin starts the plugin's process again (after a kill) and
// waits until it is ACTIVE.
func (b *bus) restartPlugin(t *testing.T, pl *plugin) {
	t.Helper()
	pl.starts++
	args := []string{"listen", "--server", b.url, "--creds", pl.creds, "--log-format", "json", "--log-level", "warn"}
	for _, c := range pl.config {
		args = append(args, "--config", c)
	}
	pl.p = startProc(t, fmt.Sprintf("%s#%d", pl.name, pl.starts), pl.bin, pl.env, pl.onLine, args...)
	b.waitActive(t, pl.name)
}

func (b *bus) waitActive(t *testing.T, names ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%v ACTIVE", names), waitLimit, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list, err := b.admin(t).ListPlugins(ctx, "")
		if err != nil {
			return false
		}
		active := map[string]bool{}
		for _, p := range list {
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

// metrics reads the broker's /metrics.
func (b *bus) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + b.httpAd + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// counter is the value of a counter with these labels (0 when absent).
func counter(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// streamMsg is one stored message the checker read.
type streamMsg struct {
	Subject string
	Header  nats.Header
	Data    []byte
	Seq     uint64
}

// readStream reads every message of stream matching filter, as stored now.
func readStream(t *testing.T, js jetstream.JetStream, stream, filter string) []streamMsg {
	t.Helper()
	var out []streamMsg
	eachMsg(t, js, stream, filter, func(m streamMsg) { out = append(out, m) })
	return out
}

// eachMsg calls fn with every message of stream matching filter, as
// stored now, in order.
func eachMsg(t *testing.T, js jetstream.JetStream, stream, filter string, fn func(streamMsg)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	want := int(info.NumPending)
	for seen, empty := 0, 0; seen < want; {
		batch, err := c.Fetch(min(want-seen, 2000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			var seq uint64
			if md != nil {
				seq = md.Sequence.Stream
			}
			fn(streamMsg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Seq: seq})
			got++
		}
		seen += got
		if got == 0 {
			if empty++; empty > 3 {
				t.Fatalf("read %s: %d of %d messages, then nothing", stream, seen, want)
			}
		}
	}
}

// consumerIdle reports whether a plugin's durable consumer has nothing
// left to deliver and nothing waiting for an ack: no delivery can happen
// any more for what the stream holds.
func consumerIdle(t *testing.T, js jetstream.JetStream, plugin string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName(plugin))
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false
	}
	return info.NumPending == 0 && info.NumAckPending == 0
}

// lines counts the lines a process printed that start with a word, by the
// rest of the line: the hook plugin's HELD and ANSWERED.
type lines struct {
	mu   sync.Mutex
	seen map[string]map[string]int
}

func newLines() *lines { return &lines{seen: map[string]map[string]int{}} }

func (l *lines) add(line string) {
	word, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok || (word != "HELD" && word != "ANSWERED") {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[word] == nil {
		l.seen[word] = map[string]int{}
	}
	l.seen[word][rest]++
}

// count is how many lines started with word.
func (l *lines) count(word string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.seen[word] {
		n += c
	}
	return n
}

// held is the set of objects whose calls arrived and were not answered.
func (l *lines) held() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for o, n := range l.seen["HELD"] {
		if n > l.seen["ANSWERED"][o] {
			out[o] = true
		}
	}
	return out
}

// scanLines is a bufio helper for tests that read a whole output.
func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// gauge is the value of an unlabelled gauge (0 when absent).
func gauge(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// saveHeapProfile writes the broker's heap profile (after a GC; the broker
// runs with --pprof) to path, for `go tool pprof`.
func (b *bus) saveHeapProfile(t *testing.T, path string) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + b.httpAd + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("heap profile: %s %v", resp.Status, err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		err = os.WriteFile(path, body, 0o644)
	}
	if err != nil {
		t.Errorf("heap profile: %v", err)
	}
}
