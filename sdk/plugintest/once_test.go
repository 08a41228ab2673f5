package plugintest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

// handledKV binds plugbus_handled on nc, with a short timeout per call so
// a refused request fails fast.
func handledKV(t *testing.T, nc *nats.Conn) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), plugintest.CallTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, schemas.BucketHandled)
	if err != nil {
		t.Fatalf("bind %s with plugin credentials: %v", schemas.BucketHandled, err)
	}
	return kv
}

// violations collects the permission violations the server reports on a
// connection.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.seen = append(v.seen, err.Error())
	}
}

// refused reports whether the server refused a publish to subject.
func (v *violations) refused(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.seen {
		if strings.Contains(s, `Publish to "`+subject+`"`) {
			return true
		}
	}
	return false
}

// What nats.go's KeyValue Get, Put and Create publish is allowed to a
// plugin on its own keys of plugbus_handled, and refused on another
// plugin's, with the credentials the broker issues (not the broker's).
func TestHandledKeysPermissions(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithAuth())
	ctx := context.Background()
	var alphaV violations
	alphaConn := bus.PluginConn(t, "alpha", nats.ErrorHandler(alphaV.handler))
	alpha, beta := handledKV(t, alphaConn), handledKV(t, bus.PluginConn(t, "beta"))

	// Its own keys: create, put, get.
	for _, c := range []struct {
		kv   jetstream.KeyValue
		name string
	}{{alpha, "alpha"}, {beta, "beta"}} {
		key := schemas.HandledKey(c.name, "ev-1")
		if _, err := c.kv.Create(ctx, key, []byte(c.name)); err != nil {
			t.Fatalf("%s: create its own key: %v", c.name, err)
		}
		if _, err := c.kv.Create(ctx, key, []byte("again")); !errors.Is(err, jetstream.ErrKeyExists) {
			t.Errorf("%s: second create = %v, want ErrKeyExists", c.name, err)
		}
		if _, err := c.kv.Put(ctx, schemas.HandledKey(c.name, "ev-2"), []byte(c.name)); err != nil {
			t.Errorf("%s: put its own key: %v", c.name, err)
		}
		if e, err := c.kv.Get(ctx, key); err != nil || string(e.Value()) != c.name {
			t.Errorf("%s: get its own key: %v", c.name, err)
		}
		if _, err := c.kv.Get(ctx, schemas.HandledKey(c.name, "never")); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s: get a missing key of its own = %v, want ErrKeyNotFound", c.name, err)
		}
	}
	if len(alphaV.seen) != 0 {
		t.Fatalf("alpha was refused on its own keys: %v", alphaV.seen)
	}

	// Another plugin's keys: neither read nor written. Each refused call
	// ends when its short context does; the proof is the server's
	// permission violation for the subject it published to.
	refusedCall := func(what, subject string, call func(ctx context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if err := call(cctx); err == nil {
			t.Errorf("alpha could %s", what)
			return
		}
		bus.WaitFor(t, func() bool { return alphaV.refused(subject) })
	}
	betaKey := schemas.HandledKey("beta", "ev-1")
	directGet := "$JS.API.DIRECT.GET.KV_" + schemas.BucketHandled + ".$KV." + schemas.BucketHandled + "."
	refusedCall("read beta's key", directGet+betaKey, func(ctx context.Context) error { _, err := alpha.Get(ctx, betaKey); return err })
	refusedCall("overwrite beta's key", "$KV."+schemas.BucketHandled+"."+betaKey, func(ctx context.Context) error {
		_, err := alpha.Put(ctx, betaKey, []byte("alpha was here"))
		return err
	})
	refusedCall("create a key of beta's", "$KV."+schemas.BucketHandled+".beta.ev-3", func(ctx context.Context) error {
		_, err := alpha.Create(ctx, schemas.HandledKey("beta", "ev-3"), []byte("alpha was here"))
		return err
	})
	refusedCall("delete the bucket", "$JS.API.STREAM.DELETE.KV_"+schemas.BucketHandled, func(ctx context.Context) error {
		js, err := jetstream.New(alphaConn)
		if err != nil {
			return nil
		}
		return js.DeleteKeyValue(ctx, schemas.BucketHandled)
	})
	if e, err := beta.Get(ctx, betaKey); err != nil || string(e.Value()) != "beta" {
		t.Errorf("beta's key after alpha's attempts: %v %v", e, err)
	}
	if _, err := beta.Get(ctx, schemas.HandledKey("beta", "ev-3")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("beta's ev-3 = %v, want not found (alpha must not have created it)", err)
	}

	// A plugin whose name is a prefix of another's gets none of its keys.
	var alV violations
	al := handledKV(t, bus.PluginConn(t, "al", nats.ErrorHandler(alV.handler)))
	alphaKey := schemas.HandledKey("alpha", "ev-1")
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := al.Get(cctx, alphaKey); err == nil {
		t.Error("plugin al read alpha's key")
	}
	bus.WaitFor(t, func() bool { return alV.refused(directGet + alphaKey) })
}

// Once runs its function once per key, whatever characters the key holds,
// as a plugin with its own credentials.
func TestOnceKeys(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithAuth())
	p, err := sdk.New(schemas.Manifest{Name: "alpha", Version: "1.0.0", Description: "does things once"}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Once(context.Background(), "x", func(context.Context) error { return nil }); !errors.Is(err, sdk.ErrNotRunning) {
		t.Fatalf("Once before Run = %v, want ErrNotRunning", err)
	}
	bus.StartPlugin(t, p)
	ctx := context.Background()
	long := strings.Repeat("x", 300)
	keys := []string{
		"2ZqmZSIbwxUGh1aWOvYqS1",               // a nuid, as the broker's event ids
		"0f8fad5b-d9cb-469f-a165-70867728950e", // a UUID
		"with.dots", "with space", "urn:event:42@host", "ü/ß", "=raw", long, long + "y",
	}
	runs := map[string]int{}
	for range 2 {
		for _, k := range keys {
			if err := p.Once(ctx, k, func(context.Context) error { runs[k]++; return nil }); err != nil {
				t.Fatalf("Once(%q): %v", k, err)
			}
		}
	}
	for _, k := range keys {
		if runs[k] != 1 {
			t.Errorf("key %.40q ran %d times, want once", k, runs[k])
		}
	}
	if st := p.Stats(); st.OnceSkipped != uint64(len(keys)) {
		t.Errorf("OnceSkipped %d, want %d", st.OnceSkipped, len(keys))
	}
	// A failing function is not marked: it runs again.
	boom := errors.New("webhook down")
	calls := 0
	fail := func(context.Context) error { calls++; return boom }
	if err := p.Once(ctx, "flaky", fail); !errors.Is(err, boom) {
		t.Errorf("Once = %v, want the function's error", err)
	}
	if err := p.Once(ctx, "flaky", func(context.Context) error { calls++; return nil }); err != nil || calls != 2 {
		t.Errorf("after a failure: %v, %d calls, want the function run again", err, calls)
	}
	if err := p.Once(ctx, "", fail); err == nil {
		t.Error("an empty key was accepted")
	}
	// The keys are the plugin's, as schemas.HandledKey makes them.
	kv := handledKV(t, bus.PluginConn(t, "alpha"))
	for _, k := range keys {
		if _, err := kv.Get(ctx, schemas.HandledKey("alpha", k)); err != nil {
			t.Errorf("no mark for %.40q under %s: %v", k, schemas.HandledKey("alpha", k), err)
		}
	}
}

// An event handled twice — the same event id delivered again after its
// handler succeeded, as after a lost acknowledgement — runs the handler
// wrapped with OnceByEventID once.
func TestOnceByEventIDAcrossDeliveries(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithAuth())
	p, err := sdk.New(schemas.Manifest{Name: "alpha", Version: "1.0.0", Description: "posts alerts",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}}}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	effects := map[string]int{}
	p.HandleEvent(schemas.TypeAlertFired, p.OnceByEventID(func(_ context.Context, e event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		effects[e.ID()]++
		return nil
	}))
	bus.StartPlugin(t, p)

	var fired schemas.AlertResponse
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityInfo, Summary: "x"}, &fired)
	bus.WaitFor(t, func() bool { return p.Stats().EventsHandled == 1 })
	// The same event again, stored anew (no Nats-Msg-Id, so the stream's
	// dedupe does not drop it): to the plugin, a redelivery.
	ctx := context.Background()
	orig, err := bus.JetStream().Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := orig.GetLastMsgForSubject(ctx, wire.EventSubject(bus.Prefix(), schemas.TypeAlertFired))
	if err != nil {
		t.Fatal(err)
	}
	again := &nats.Msg{Subject: raw.Subject, Header: nats.Header{}, Data: raw.Data}
	for k, v := range raw.Header {
		if k != jetstream.MsgIDHeader {
			again.Header[k] = v
		}
	}
	if _, err := bus.JetStream().PublishMsg(ctx, again); err != nil {
		t.Fatal(err)
	}
	bus.WaitFor(t, func() bool { return p.Stats().EventsHandled == 2 })
	mu.Lock()
	defer mu.Unlock()
	if effects[fired.EventID] != 1 {
		t.Errorf("side effect ran %d times for event %s, want once", effects[fired.EventID], fired.EventID)
	}
	if st := p.Stats(); st.OnceSkipped != 1 {
		t.Errorf("OnceSkipped %d, want 1", st.OnceSkipped)
	}
}
