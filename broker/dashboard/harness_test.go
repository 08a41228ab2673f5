package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/broker/dashboard/token"
	"github.com/plugbus/plugbus/internal/browsertest"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// bus is a real broker on its embedded NATS (auth on, as `make run`),
// serving the dashboard on a random HTTP port.
type bus struct {
	b       *broker.Broker
	dataDir string
	base    string // http://127.0.0.1:PORT
	admin   *nats.Conn
	api     *client.Client
	// stop stops the broker and waits for Run to return.
	stop func()
}

func startBus(t *testing.T) *bus {
	t.Helper()
	dir := t.TempDir()
	l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	b, err := broker.New(broker.Config{
		DataDir: dir, Listen: "127.0.0.1:-1", HTTPAddr: "127.0.0.1:0",
		// A stopped plugin turns STALE within a few heartbeats.
		HeartbeatInterval: 200 * time.Millisecond, PluginTimeout: 2 * time.Second,
		SelfCheck: true, Logger: &l,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("broker did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("broker stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker not ready within 30s")
	}
	nc, err := nats.Connect(b.NATSURL(), nats.UserCredentials(filepath.Join(dir, broker.AdminCredsFile)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &bus{b: b, dataDir: dir, base: "http://" + b.HTTPAddr(), admin: nc, api: client.New(nc), stop: stop}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startPlugin runs p with the credentials the broker issues for it, until
// the test ends or stop is called, and waits until it is ready.
func (bs *bus) startPlugin(t *testing.T, p *sdk.Plugin) (stop func()) {
	t.Helper()
	res, err := bs.api.PluginCreds(ctxT(t), p.Name())
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), p.Name()+".creds")
	if err := os.WriteFile(f, []byte(res.Creds), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(bs.b.NATSURL(), nats.UserCredentials(f), nats.CustomInboxPrefix(wire.InboxPrefix("plugin", p.Name())))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, nc) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("plugin %s did not stop", p.Name())
		}
		nc.Close()
	}
	t.Cleanup(stop)
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("plugin %s stopped before ready: %v", p.Name(), err)
	case <-time.After(30 * time.Second):
		t.Fatalf("plugin %s not ready", p.Name())
	}
	return stop
}

// fire fires an alert and returns its event's id.
func (bs *bus) fire(t *testing.T, summary string) string {
	t.Helper()
	res, err := bs.api.FireAlert(ctxT(t), schemas.AlertFireRequest{Severity: "critical", Summary: summary})
	if err != nil {
		t.Fatal(err)
	}
	if res.EventID == "" {
		t.Fatalf("alert %q: no event", summary)
	}
	return res.EventID
}

// loginToken is a login token signed by the local admin's credentials.
func (bs *bus) loginToken(t *testing.T) string {
	t.Helper()
	return bs.tokenOf(t, filepath.Join(bs.dataDir, broker.AdminCredsFile))
}

func (bs *bus) tokenOf(t *testing.T, credsFile string) string {
	t.Helper()
	creds, err := os.ReadFile(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.New(creds, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (bs *bus) loginURL(t *testing.T, next string) string {
	q := url.Values{"token": {bs.loginToken(t)}}
	if next != "" {
		q.Set("next", next)
	}
	return bs.base + "/dash/login?" + q.Encode()
}

// get fetches a path of the dashboard.
func (bs *bus) get(t *testing.T, path string, hdr http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, bs.base+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// newPlugin makes an SDK plugin that consumes alerts (with h, or
// acknowledging them) and steps in alert.pre_notify (continuing).
func newPlugin(t *testing.T, name string, h sdk.EventHandler, opts ...sdk.Option) *sdk.Plugin {
	t.Helper()
	m := schemas.Manifest{
		Name: name, Version: "1.2.0", Description: "a test plugin", Category: "test",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, MaxDeliver: 1},
		Hooks:  []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify}},
	}
	p, err := sdk.New(m, append([]sdk.Option{sdk.WithLogger(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = func(context.Context, event.Event) error { return nil }
	}
	p.HandleEvent(schemas.TypeAlertFired, h)
	p.OnPreNotify(func(context.Context, schemas.AlertFireRequest) (*schemas.HookResponse, error) {
		return sdk.Continue(), nil
	})
	return p
}
