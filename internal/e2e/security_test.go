package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// The attack matrix of docs/security.md: on the make run setup (the
// embedded server, hostd running the sample plugins with the credentials
// it obtained for each), every attempt below uses real credentials, the
// server or the broker must refuse it, and the legitimate path next to it
// must work. The nats CLI attempts run the real nats binary.

const prefix = wire.DefaultPrefix

// attempt is one try of an attack; it returns nil when it was refused and
// says how it got through otherwise.
type attempt struct {
	who string
	try func(t *testing.T) error
}

type attack struct {
	name     string
	attempts []attempt
	// legit is the allowed path next to the attack; it must work.
	legit func(t *testing.T) error
}

// identities are the credentials files the matrix uses.
type identities struct {
	url                   string
	admin, inc, nw, host2 string
}

// dial connects with creds and the inbox prefix of the identity; the
// error handler stays quiet (the violations are read with LastError).
func dial(url, creds, inbox string, opts ...nats.Option) (*nats.Conn, error) {
	o := []nats.Option{nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}), nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}
	if creds != "" {
		o = append(o, nats.UserCredentials(creds))
	}
	if inbox != "" {
		o = append(o, nats.CustomInboxPrefix(inbox))
	}
	return nats.Connect(url, append(o, opts...)...)
}

func mustDial(t *testing.T, url, creds, inbox string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := dial(url, creds, inbox, opts...)
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// refusedAfter runs op on a fresh connection and reports nil when the
// server answered it with a permissions violation for verb ("Publish" or
// "Subscription") on subject. The server sends the violation before it
// answers the flush's PING, so after Flush it is in LastError: no waiting.
func refusedAfter(t *testing.T, nc *nats.Conn, verb, subject string, op func() error) error {
	t.Helper()
	if err := op(); err != nil {
		return fmt.Errorf("%s %s: client error before the server decided: %v", verb, subject, err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("flush: %v", err)
	}
	last := nc.LastError()
	want := fmt.Sprintf("Permissions Violation for %s to %q", verb, subject)
	if last != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), want) {
		return nil
	}
	return fmt.Errorf("%s %s was allowed (last error %v)", verb, subject, last)
}

func pubRefused(t *testing.T, url, creds, inbox, subject string, body []byte) error {
	t.Helper()
	nc := mustDial(t, url, creds, inbox)
	return refusedAfter(t, nc, "Publish", subject, func() error {
		return nc.PublishMsg(&nats.Msg{Subject: subject, Reply: nc.NewRespInbox(), Data: body})
	})
}

func subRefused(t *testing.T, url, creds, inbox, subject, queue string) error {
	t.Helper()
	nc := mustDial(t, url, creds, inbox)
	return refusedAfter(t, nc, "Subscription", subject, func() error {
		var err error
		if queue != "" {
			_, err = nc.QueueSubscribeSync(subject, queue)
		} else {
			_, err = nc.SubscribeSync(subject)
		}
		return err
	})
}

// forbiddenReply calls a broker endpoint and requires a forbidden error.
func forbiddenReply(t *testing.T, nc *nats.Conn, subject string, req any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := wire.Call(ctx, nc, subject, req, nil)
	if errors.Is(err, schemas.ErrForbidden) {
		return nil
	}
	return fmt.Errorf("%s answered %v, want forbidden", subject, err)
}

func call(t *testing.T, nc *nats.Conn, subject string, req, resp any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wire.Call(ctx, nc, subject, req, resp)
}

// forgedEvent is a CloudEvent message with whatever claims it is given.
func forgedEvent(t *testing.T, subject, id, typ, source string) *nats.Msg {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(source)
	e.SetTime(time.Now())
	if err := e.SetData(event.ApplicationJSON, map[string]string{"name": "forged", "image": "evil"}); err != nil {
		t.Fatal(err)
	}
	msg, err := wire.EncodeEvent(context.Background(), subject, &e)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// natsCLI is the nats binary: on $PATH or where go install puts it.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0 (.ci/run does)")
	return ""
}

// runNats runs the nats CLI against the bus and returns its output and
// whether it succeeded.
func runNats(t *testing.T, url string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, natsCLI(t), append([]string{"--server", url, "--timeout", "2s", "--no-context"}, args...)...)
	cmd.Env = append(os.Environ(), "NATS_CREDS=", "NATS_CONTEXT=", "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func natsRefused(t *testing.T, url string, want string, args ...string) error {
	t.Helper()
	out, ok := runNats(t, url, args...)
	if !ok && strings.Contains(out, want) {
		return nil
	}
	return fmt.Errorf("nats %s: succeeded=%v, output %q (want a failure saying %q)", strings.Join(args, " "), ok, out, want)
}

// lastEvent returns the newest stored event on subject, read with admin
// credentials, or nil when there is none.
func lastEvent(t *testing.T, ids identities, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	nc := mustDial(t, ids.url, ids.admin, "")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatalf("admin reads stream info: %v", err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("admin reads the last event on %s: %v", subject, err)
	}
	return m
}

func TestAttackMatrix(t *testing.T) {
	lb := startLocalBus(t, false)
	lb.waitActive(t, "incrementer", "job-policy", "notify-webhook")
	dir := t.TempDir()
	ids := identities{url: lb.natsURL, admin: filepath.Join(lb.dataDir, "creds", "admin.creds"),
		inc: lb.pluginCreds(t, "incrementer"), nw: lb.pluginCreds(t, "notify-webhook"),
		host2: filepath.Join(dir, "h2.creds")}
	lb.mustBusctl(t, "hosts", "creds", "h2", "--plugins", "incrementer", "--out", ids.host2)
	incInbox, nwInbox, h2Inbox := wire.InboxPrefix("plugin", "incrementer"), wire.InboxPrefix("plugin", "notify-webhook"), wire.InboxPrefix("host", "h2")
	url := ids.url

	attacks := []attack{
		{
			name: "anonymous connect",
			attempts: []attempt{{"nobody", func(t *testing.T) error {
				nc, err := dial(url, "", "")
				if err == nil {
					nc.Close()
					return errors.New("connected without credentials")
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					return fmt.Errorf("refused, but not as an authorization error: %v", err)
				}
				return nil
			}}},
			legit: func(t *testing.T) error {
				nc, err := dial(url, ids.inc, incInbox)
				if err == nil {
					nc.Close()
				}
				return err
			},
		},
		{
			name: "plugin publishes a core event",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					subject := wire.EventSubject(prefix, schemas.TypeJobDeployed)
					if err := pubRefused(t, url, ids.inc, incInbox, subject, nil); err != nil {
						return err
					}
					nc := mustDial(t, url, ids.inc, incInbox)
					err := refusedAfter(t, nc, "Publish", subject, func() error {
						return nc.PublishMsg(forgedEvent(t, subject, "forged-core-1", schemas.TypeJobDeployed, wire.BrokerSource))
					})
					if err != nil {
						return err
					}
					if m := lastEvent(t, ids, subject); m != nil && m.Header.Get("ce-id") == "forged-core-1" {
						return errors.New("the forged event is in the event stream")
					}
					return nil
				}},
				{"plugin incrementer, nats CLI", func(t *testing.T) error {
					return natsRefused(t, url, "Permissions Violation for Publish", "--creds", ids.inc, "pub", "plugbus.evt.job.v1.deployed", `{"name":"forged"}`)
				}},
				{"admin", func(t *testing.T) error {
					return pubRefused(t, url, ids.admin, "", wire.EventSubject(prefix, schemas.TypeAlertFired), []byte("{}"))
				}},
			},
			// Its own events, with its own source, are stored.
			legit: func(t *testing.T) error {
				nc := mustDial(t, url, ids.inc, incInbox)
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				subject := wire.PluginEventSubject(prefix, "incrementer") + ".probe.v1.ok"
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err = js.PublishMsg(ctx, forgedEvent(t, subject, "own-1", wire.PluginEventType("incrementer", "probe.v1.ok"), wire.PluginSource("incrementer")))
				return err
			},
		},
		{
			name: "subscribe to another plugin's control or hook subjects",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					return subRefused(t, url, ids.inc, incInbox, wire.PluginSubject(prefix, "job-policy", ">"), "")
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return subRefused(t, url, ids.inc, incInbox, wire.HookSubject(prefix, "job.pre_deploy", "job-policy"), "q")
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return subRefused(t, url, ids.inc, incInbox, prefix+".>", "")
				}},
				{"plugin incrementer, nats CLI", func(t *testing.T) error {
					return natsRefused(t, url, "Permissions Violation for Subscription", "--creds", ids.inc, "--inbox-prefix", incInbox, "sub", "plugbus.plugin.job-policy.>", "--count", "1")
				}},
			},
			legit: func(t *testing.T) error {
				nc := mustDial(t, url, ids.inc, incInbox)
				if _, err := nc.SubscribeSync(wire.PluginSubject(prefix, "incrementer", "probe")); err != nil {
					return err
				}
				if err := nc.Flush(); err != nil {
					return err
				}
				if err := nc.LastError(); err != nil {
					return err
				}
				return nil
			},
		},
		{
			name: "answer another plugin's action",
			attempts: []attempt{
				{"plugin notify-webhook", func(t *testing.T) error {
					return subRefused(t, url, ids.nw, nwInbox, wire.PluginSubject(prefix, "incrementer", schemas.VerbAction), "q")
				}},
				{"plugin notify-webhook", func(t *testing.T) error {
					// Another identity's reply inbox: the admin's.
					return pubRefused(t, url, ids.nw, nwInbox, "_INBOX.anything.1", []byte(`{"value":999}`))
				}},
				{"plugin notify-webhook", func(t *testing.T) error {
					return subRefused(t, url, ids.nw, nwInbox, "_INBOX.>", "")
				}},
			},
			legit: func(t *testing.T) error {
				out, errOut, code := lb.busctl(t, "machine", "action", "m-matrix", "increment", "-o", "json")
				if code != 0 || !strings.Contains(out, `"plugin": "incrementer"`) {
					return fmt.Errorf("busctl machine action: exit %d\n%s%s", code, out, errOut)
				}
				return nil
			},
		},
		{
			name: "register as another plugin",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, wire.PluginAPISubject(prefix, schemas.APIPluginsRegister, "notify-webhook"), nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					nc := mustDial(t, url, ids.inc, incInbox)
					return forbiddenReply(t, nc, wire.PluginAPISubject(prefix, schemas.APIPluginsRegister, "incrementer"),
						schemas.RegisterRequest{Manifest: schemas.Manifest{Name: "notify-webhook", Version: "9.9.9"}})
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, wire.PluginAPISubject(prefix, schemas.APIPluginsUnregister, "job-policy"), []byte(`{"name":"job-policy","force":true}`))
				}},
				{"plugin incrementer", func(t *testing.T) error {
					nc := mustDial(t, url, ids.inc, incInbox)
					return forbiddenReply(t, nc, wire.PluginAPISubject(prefix, schemas.APIPluginsUnregister, "incrementer"),
						schemas.PluginUnregisterRequest{Name: "job-policy", Force: true})
				}},
			},
			// A plugin may call the broker API a plugin needs.
			legit: func(t *testing.T) error {
				nc := mustDial(t, url, ids.inc, incInbox)
				var list schemas.PluginListResponse
				if err := call(t, nc, wire.APISubject(prefix, schemas.APIPluginsList), schemas.PluginListRequest{}, &list); err != nil {
					return err
				}
				if len(list.Plugins) != 3 {
					return fmt.Errorf("plugins.list as incrementer: %d plugins, want 3", len(list.Plugins))
				}
				return nil
			},
		},
		{
			name: "take over another plugin's name",
			attempts: []attempt{{"plugin incrementer", func(t *testing.T) error {
				// What was measured before identities: a second binary
				// registering as notify-webhook 9.9.9 took its name, its
				// secret config and its consumer. It runs with its own
				// (incrementer's) credentials.
				nc := mustDial(t, url, ids.inc, incInbox)
				if err := forbiddenReply(t, nc, wire.PluginAPISubject(prefix, schemas.APIPluginsRegister, "incrementer"),
					schemas.RegisterRequest{Manifest: schemas.Manifest{Name: "notify-webhook", Version: "9.9.9",
						Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}}}}); err != nil {
					return err
				}
				var rec schemas.PluginRecord
				if err := json.Unmarshal([]byte(lb.mustBusctl(t, "plugins", "get", "notify-webhook", "-o", "json")), &rec); err != nil {
					return err
				}
				if rec.Version != "1.0.0" || rec.State != schemas.StateActive || rec.Consumer != schemas.ConsumerName("notify-webhook") {
					return fmt.Errorf("notify-webhook is now %s %s, consumer %q", rec.Version, rec.State, rec.Consumer)
				}
				return nil
			}}},
			// The real notify-webhook still gets the alerts.
			legit: func(t *testing.T) error {
				lb.mustBusctl(t, "alert", "fire", "--severity", "warning", "--summary", "after the takeover attempt", "--label", "host=m9")
				waitFor(t, "the alert at the webhook sink", func() bool { return strings.Contains(lb.proc.out.String(), "after the takeover attempt") })
				return nil
			},
		},
		{
			name: "purge or delete the event stream, the DLQ or a KV bucket",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.STREAM.PURGE."+schemas.StreamEvents, []byte("{}"))
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.STREAM.DELETE."+schemas.StreamDLQ, nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.STREAM.DELETE.KV_"+schemas.BucketConfigs, nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					// Writing another plugin's config key.
					return pubRefused(t, url, ids.inc, incInbox, "$KV."+schemas.BucketConfigs+".job-policy", []byte(`{"allowed_images":[".*"]}`))
				}},
				{"plugin incrementer, nats CLI", func(t *testing.T) error {
					return natsRefused(t, url, "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.PLUGBUS_EVENTS\"", "--creds", ids.inc, "--inbox-prefix", incInbox, "stream", "rm", schemas.StreamEvents, "-f")
				}},
				{"admin", func(t *testing.T) error {
					return pubRefused(t, url, ids.admin, "", "$JS.API.STREAM.DELETE."+schemas.StreamEvents, nil)
				}},
				{"admin", func(t *testing.T) error {
					return pubRefused(t, url, ids.admin, "", "$JS.API.STREAM.PURGE."+schemas.StreamDLQ, []byte("{}"))
				}},
				{"host h2", func(t *testing.T) error {
					return pubRefused(t, url, ids.host2, h2Inbox, "$JS.API.STREAM.DELETE.KV_"+schemas.BucketHosts, nil)
				}},
			},
			// The admin reads the streams; the stream is still there.
			legit: func(t *testing.T) error {
				out, ok := runNats(t, url, "--creds", ids.admin, "stream", "info", schemas.StreamEvents, "--json")
				if !ok || !strings.Contains(out, `"name": "PLUGBUS_EVENTS"`) {
					return fmt.Errorf("nats stream info as admin: %s", out)
				}
				return nil
			},
		},
		{
			name: "read another plugin's consumer",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.CONSUMER.MSG.NEXT."+schemas.StreamEvents+"."+schemas.ConsumerName("notify-webhook"), []byte(`{"batch":1}`))
				}},
				{"admin", func(t *testing.T) error {
					return pubRefused(t, url, ids.admin, "", "$JS.API.CONSUMER.MSG.NEXT."+schemas.StreamEvents+"."+schemas.ConsumerName("notify-webhook"), []byte(`{"batch":1}`))
				}},
				{"admin", func(t *testing.T) error {
					// Nor delete it.
					return pubRefused(t, url, ids.admin, "", "$JS.API.CONSUMER.DELETE."+schemas.StreamEvents+"."+schemas.ConsumerName("notify-webhook"), nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					// Nor its replay consumer (docs/replay.md).
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.CONSUMER.MSG.NEXT."+schemas.StreamEvents+"."+schemas.ReplayConsumerName("notify-webhook"), []byte(`{"batch":1}`))
				}},
				{"plugin incrementer", func(t *testing.T) error {
					// Nor start a replay: that is the admin's.
					return pubRefused(t, url, ids.inc, incInbox, "plugbus.api."+schemas.APIPluginsReplay, []byte(`{"name":"notify-webhook","from_seq":1}`))
				}},
			},
			legit: func(t *testing.T) error {
				nc := mustDial(t, url, ids.nw, nwInbox)
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err = js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName("notify-webhook"))
				return err
			},
		},
		{
			name: "publish an event with another plugin's source",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					subject := wire.PluginEventSubject(prefix, "notify-webhook") + ".sent.v1.ok"
					return pubRefused(t, url, ids.inc, incInbox, subject, nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					// On its own subject the server lets it through; every
					// SDK consumer refuses it (wire.CheckOrigin) before a
					// handler sees it.
					subject := wire.PluginEventSubject(prefix, "incrementer") + ".sent.v1.ok"
					nc := mustDial(t, url, ids.inc, incInbox)
					js, err := jetstream.New(nc)
					if err != nil {
						return err
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if _, err := js.PublishMsg(ctx, forgedEvent(t, subject, "forged-source-1", wire.PluginEventType("incrementer", "sent.v1.ok"), wire.PluginSource("notify-webhook"))); err != nil {
						return fmt.Errorf("publish on its own subject: %v", err)
					}
					m := lastEvent(t, ids, subject)
					if m == nil {
						return errors.New("not stored")
					}
					ev, err := wire.DecodeEvent(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
					if err != nil {
						return err
					}
					if err := wire.CheckOrigin(prefix, m.Subject, ev); !errors.Is(err, wire.ErrUntrustedEvent) {
						return fmt.Errorf("a consumer would accept it: CheckOrigin = %v", err)
					}
					return nil
				}},
			},
			legit: func(t *testing.T) error {
				m := lastEvent(t, ids, wire.PluginEventSubject(prefix, "incrementer")+".probe.v1.ok")
				if m == nil {
					return errors.New("the plugin's own event is not stored")
				}
				ev, err := wire.DecodeEvent(context.Background(), &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
				if err != nil {
					return err
				}
				return wire.CheckOrigin(prefix, m.Subject, ev)
			},
		},
		{
			name: "host obtains credentials for a plugin not placed on it",
			attempts: []attempt{
				{"host h2", func(t *testing.T) error {
					nc := mustDial(t, url, ids.host2, h2Inbox)
					return forbiddenReply(t, nc, wire.HostAPISubject(prefix, schemas.APIHostsPluginCreds, "h2"), schemas.CredsRequest{Name: "job-policy"})
				}},
				{"host h2", func(t *testing.T) error {
					// Asking as another host.
					return pubRefused(t, url, ids.host2, h2Inbox, wire.HostAPISubject(prefix, schemas.APIHostsPluginCreds, "local"), []byte(`{"name":"job-policy"}`))
				}},
				{"host h2", func(t *testing.T) error {
					return pubRefused(t, url, ids.host2, h2Inbox, wire.APISubject(prefix, schemas.APIPluginsCreds), []byte(`{"name":"job-policy"}`))
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, wire.APISubject(prefix, schemas.APIPluginsCreds), []byte(`{"name":"job-policy"}`))
				}},
			},
			legit: func(t *testing.T) error {
				nc := mustDial(t, url, ids.host2, h2Inbox)
				var resp schemas.CredsResponse
				if err := call(t, nc, wire.HostAPISubject(prefix, schemas.APIHostsPluginCreds, "h2"), schemas.CredsRequest{Name: "incrementer"}, &resp); err != nil {
					return err
				}
				inc2 := filepath.Join(dir, "inc2.creds")
				if err := os.WriteFile(inc2, []byte(resp.Creds), 0o600); err != nil {
					return err
				}
				c, err := dial(url, inc2, incInbox)
				if err != nil {
					return fmt.Errorf("the creds h2 obtained do not connect: %v", err)
				}
				c.Close()
				return nil
			},
		},
		{
			name: "reconnect with revoked credentials",
			attempts: []attempt{
				{"plugin probe", func(t *testing.T) error {
					creds := lb.pluginCreds(t, "probe")
					closed := make(chan struct{})
					nc := mustDial(t, url, creds, wire.InboxPrefix("plugin", "probe"), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
					if _, err := nc.SubscribeSync(wire.PluginSubject(prefix, "probe", "config")); err != nil {
						return err
					}
					if err := nc.Flush(); err != nil {
						return fmt.Errorf("the probe's own subscription before the revocation: %v", err)
					}
					lb.mustBusctl(t, "plugins", "revoke", "probe")
					select {
					case <-closed:
					case <-time.After(30 * time.Second):
						return errors.New("the live connection was not cut off")
					}
					if c, err := dial(url, creds, ""); err == nil {
						c.Close()
						return errors.New("reconnected with revoked credentials")
					} else if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthRevoked) {
						return fmt.Errorf("refused, but not as an authorization error: %v", err)
					}
					m := lastEvent(t, ids, wire.EventSubject(prefix, schemas.TypeIdentityRevoked))
					if m == nil || !strings.Contains(string(m.Data), `"name":"probe"`) {
						return errors.New("no io.plugbus.identity.v1.revoked event records it")
					}
					// A host cannot hand it new credentials either.
					hc := mustDial(t, url, filepath.Join(lb.dataDir, "creds", "host-local.creds"), wire.InboxPrefix("host", "local"))
					return forbiddenReply(t, hc, wire.HostAPISubject(prefix, schemas.APIHostsPluginCreds, "local"), schemas.CredsRequest{Name: "probe"})
				}},
				{"host h3", func(t *testing.T) error {
					creds := filepath.Join(dir, "h3.creds")
					lb.mustBusctl(t, "hosts", "creds", "h3", "--plugins", "incrementer", "--out", creds)
					c, err := dial(url, creds, wire.InboxPrefix("host", "h3"))
					if err != nil {
						return fmt.Errorf("h3 before the revocation: %v", err)
					}
					c.Close()
					lb.mustBusctl(t, "hosts", "revoke", "h3")
					if c, err := dial(url, creds, wire.InboxPrefix("host", "h3")); err == nil {
						c.Close()
						return errors.New("reconnected with revoked host credentials")
					}
					return nil
				}},
			},
			// An admin can issue new ones, which work.
			legit: func(t *testing.T) error {
				c, err := dial(url, lb.pluginCreds(t, "probe"), wire.InboxPrefix("plugin", "probe"))
				if err == nil {
					c.Close()
				}
				return err
			},
		},
		{
			name: "admin credentials answer as a plugin",
			attempts: []attempt{
				{"admin", func(t *testing.T) error {
					return subRefused(t, url, ids.admin, "", wire.PluginSubject(prefix, "incrementer", schemas.VerbAction), "q")
				}},
				{"admin", func(t *testing.T) error {
					return subRefused(t, url, ids.admin, "", wire.HookSubject(prefix, "job.pre_deploy", "job-policy"), "q")
				}},
				{"admin", func(t *testing.T) error {
					return pubRefused(t, url, ids.admin, "", wire.PluginEventSubject(prefix, "incrementer")+".x.v1.y", nil)
				}},
				{"admin", func(t *testing.T) error {
					return subRefused(t, url, ids.admin, "", "_INBOX_broker.>", "")
				}},
			},
			legit: func(t *testing.T) error {
				_, errOut, code := lb.busctl(t, "plugins", "ls")
				if code != 0 {
					return errors.New(errOut)
				}
				return nil
			},
		},
		{
			name: "read another plugin's secret config",
			attempts: []attempt{
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.DIRECT.GET.KV_"+schemas.BucketConfigs+".$KV."+schemas.BucketConfigs+".notify-webhook", nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					return pubRefused(t, url, ids.inc, incInbox, "$JS.API.DIRECT.GET.KV_"+schemas.BucketPlugins+".$KV."+schemas.BucketPlugins+".notify-webhook", nil)
				}},
				{"plugin incrementer", func(t *testing.T) error {
					nc := mustDial(t, url, ids.inc, incInbox)
					var rec schemas.PluginRecord
					if err := call(t, nc, wire.APISubject(prefix, schemas.APIPluginsGet), schemas.PluginGetRequest{Name: "notify-webhook"}, &rec); err != nil {
						return err
					}
					if rec.Config["url"] != schemas.Redacted {
						return fmt.Errorf("plugins.get shows url %v", rec.Config["url"])
					}
					return nil
				}},
				{"admin", func(t *testing.T) error {
					out := lb.mustBusctl(t, "plugins", "get", "notify-webhook", "-o", "json")
					if strings.Contains(out, lb.sink) || !strings.Contains(out, `"url": "\u003credacted\u003e"`) && !strings.Contains(out, `"url": "<redacted>"`) {
						return fmt.Errorf("busctl plugins get shows the secret:\n%s", out)
					}
					out = lb.mustBusctl(t, "plugins", "get", "notify-webhook")
					if strings.Contains(out, lb.sink) {
						return fmt.Errorf("busctl plugins get shows the secret:\n%s", out)
					}
					return nil
				}},
				{"admin", func(t *testing.T) error {
					// Nor do events or logs carry it.
					out := lb.mustBusctl(t, "events", "tail", "--count", "200", "-o", "json")
					logs := lb.mustBusctl(t, "plugins", "logs", "notify-webhook", "-n", "200")
					if strings.Contains(out, lb.sink) || strings.Contains(logs, "http://"+lb.sink+"/alerts") {
						return errors.New("the webhook URL is in the events or the plugin's logs")
					}
					return nil
				}},
			},
			// The plugin itself reads it.
			legit: func(t *testing.T) error {
				nc := mustDial(t, url, ids.nw, nwInbox)
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				kv, err := js.KeyValue(ctx, schemas.BucketConfigs)
				if err != nil {
					return err
				}
				e, err := kv.Get(ctx, "notify-webhook")
				if err != nil {
					return err
				}
				if !strings.Contains(string(e.Value()), lb.sink) {
					return fmt.Errorf("its own config: %s", e.Value())
				}
				return nil
			},
		},
		{
			name: "the broker listens beyond loopback without TLS",
			attempts: []attempt{{"operator", func(t *testing.T) error {
				for _, listen := range []string{"0.0.0.0:4222", ":4222", "192.0.2.7:4222"} {
					if w := broker.InsecureListen(broker.Config{Listen: listen}); !strings.HasPrefix(w, "INSECURE: ") {
						return fmt.Errorf("--listen %s: no warning", listen)
					}
				}
				return nil
			}}},
			legit: func(t *testing.T) error {
				for _, c := range []broker.Config{{Listen: "127.0.0.1:4222"}, {Listen: "localhost:4222"},
					{Listen: "0.0.0.0:4222", ServerTLSCert: "c.pem", ServerTLSKey: "k.pem"}} {
					if w := broker.InsecureListen(c); w != "" {
						return fmt.Errorf("%+v: warns %q", c, w)
					}
				}
				return nil
			},
		},
	}

	n, allowed := 0, 0
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			for i, at := range a.attempts {
				n++
				if err := at.try(t); err != nil {
					allowed++
					t.Errorf("attempt %d by %s was ALLOWED: %v", i+1, at.who, err)
				}
			}
			if err := a.legit(t); err != nil {
				t.Errorf("the legitimate path failed: %v", err)
			}
		})
	}
	t.Logf("attack matrix: %d attacks, %d attempts, %d allowed", len(attacks), n, allowed)

	// docs/security.md ends with this matrix and its result.
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attacks {
		if !strings.Contains(string(doc), "| "+a.name+" |") {
			t.Errorf("docs/security.md's attack matrix has no row %q", a.name)
		}
	}
	want := fmt.Sprintf("%d attempts, %d allowed", n, allowed)
	if m := regexp.MustCompile(`\d+ attempts, \d+ allowed`).FindString(string(doc)); m != want {
		t.Errorf("docs/security.md says %q; this run: %q", m, want)
	}
}
