package broker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// eventsOf returns the stored events of a type whose ce-subject is subject.
func eventsOf(t *testing.T, tb *testBus, eventType, subject string) []*nats.Msg {
	t.Helper()
	ctx := context.Background()
	c, err := tb.js.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.EventSubject("plugbus", eventType)}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*nats.Msg
	if info.NumPending == 0 {
		return nil
	}
	batch, err := c.Fetch(int(info.NumPending), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if m.Headers().Get("ce-subject") == subject {
			out = append(out, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		}
	}
	return out
}

func callKey(t *testing.T, tb *testBus, endpoint, key string, req, resp any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wire.CallHeader(ctx, tb.nc, wire.APISubject("plugbus", endpoint), nats.Header{wire.HeaderIdempotencyKey: {key}}, req, resp)
}

// A repeat with the same idempotency key gets the first reply and stores
// nothing new; another key is another operation.
func TestIdempotentRequests(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	var first, again, other schemas.AlertResponse
	if err := callKey(t, tb, schemas.APIAlertsFire, "k1", schemas.AlertFireRequest{Severity: "warning", Summary: "disk"}, &first); err != nil {
		t.Fatal(err)
	}
	if err := callKey(t, tb, schemas.APIAlertsFire, "k1", schemas.AlertFireRequest{Severity: "warning", Summary: "disk"}, &again); err != nil {
		t.Fatal(err)
	}
	if first.EventID == "" || again.EventID != first.EventID || again.Alert.ID != first.Alert.ID || !again.Alert.FiredAt.Equal(first.Alert.FiredAt) {
		t.Fatalf("the repeat got another reply:\n%+v\n%+v", first, again)
	}
	if n := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/"+first.Alert.ID)); n != 1 {
		t.Fatalf("%d fired events for one idempotent request sent twice, want 1", n)
	}
	if err := callKey(t, tb, schemas.APIAlertsFire, "k2", schemas.AlertFireRequest{Severity: "warning", Summary: "disk"}, &other); err != nil {
		t.Fatal(err)
	}
	if other.Alert.ID == first.Alert.ID || other.EventID == first.EventID {
		t.Fatal("another key made the same operation")
	}
	// An error reply is kept too: a resolve of an unknown alert repeated.
	for range 2 {
		err := callKey(t, tb, schemas.APIAlertsResolve, "k3", schemas.AlertRef{ID: "nope"}, nil)
		wantCode(t, err, schemas.CodeNotFound, "id")
	}
	// Deploys: the same key deploys once.
	var d1, d2 schemas.JobResponse
	for _, d := range []*schemas.JobResponse{&d1, &d2} {
		if err := callKey(t, tb, schemas.APIJobsDeploy, "deploy-web-1", schemas.JobDeployRequest{Name: "web", Version: "1", Image: "nginx"}, d); err != nil {
			t.Fatal(err)
		}
	}
	if d1.EventID != d2.EventID || len(eventsOf(t, tb, schemas.TypeJobDeployed, "job/web")) != 1 {
		t.Fatalf("deploy repeated: %s %s", d1.EventID, d2.EventID)
	}
	// A key too long is refused, naming the header.
	err := callKey(t, tb, schemas.APIAlertsFire, strings.Repeat("x", 300), schemas.AlertFireRequest{Severity: "info", Summary: "s"}, nil)
	wantCode(t, err, schemas.CodeInvalidField, wire.HeaderIdempotencyKey)
}

// An alert whose event would be over the stream's limit is refused before
// anything is stored (measured before: stored as firing, reply internal).
func TestOversizedAlertStoresNothing(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	req := schemas.AlertFireRequest{ID: "big", Severity: "critical", Summary: strings.Repeat("x", 1_048_550-100)}
	body, _ := json.Marshal(req)
	if len(body) > tb.b.cfg.MaxRequestBytes {
		t.Fatalf("the request itself (%d bytes) is over the limit: the test must send one just under it", len(body))
	}
	err := tb.call(t, schemas.APIAlertsFire, req, nil)
	e := wantCode(t, err, schemas.CodeTooLarge, "")
	if !strings.Contains(e.Message, "nothing was stored") {
		t.Errorf("message %q", e.Message)
	}
	if _, err := tb.b.st.alerts.Get(context.Background(), "big"); !isNotFound(err) {
		t.Fatalf("the refused alert is stored: %v", err)
	}
	if n := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/big")); n != 0 {
		t.Fatalf("%d events for a refused alert", n)
	}
}

// What a broker that stopped between commit and publish left (a record
// with its outbox) is published by the sweeper, once, and cleared.
func TestOutboxLeftByACrashIsPublished(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()
	alert := schemas.Alert{ID: "crashed", Severity: "warning", Summary: "s", Status: schemas.AlertFiring, FiredAt: time.Now().UTC()}
	ev, err := NewEvent(schemas.TypeAlertFired, alert, WithSubject("alert/crashed"), WithID(eventID("op-1", 0)))
	if err != nil {
		t.Fatal(err)
	}
	body, err := encodeRecord(alert, recordMeta{Op: "op-1", Events: []string{ev.ID()}, Pending: []pendingEvent{pendingOf(ev)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.b.st.alerts.Create(ctx, "crashed", body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the outbox cleared", func() bool {
		e, err := tb.b.st.alerts.Get(ctx, "crashed")
		return err == nil && !strings.Contains(string(e.Value()), "_pending")
	})
	got := eventsOf(t, tb, schemas.TypeAlertFired, "alert/crashed")
	if len(got) != 1 || got[0].Header.Get("ce-id") != ev.ID() {
		t.Fatalf("published %d events (%v), want the pending one once", len(got), got)
	}
	// The next operation on it sees a clean record: resolving works.
	tb.mustCall(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: "crashed"}, nil)
}

// A resolved alert and a deleted job leave their buckets after the
// retention, so the buckets (and the server's index of them) do not grow
// with history.
func TestRetention(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), AlertRetention: time.Second, JobRetention: time.Second})
	ctx := context.Background()
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: "info", Summary: "s"}, nil)
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "x"}, nil)
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a2", Severity: "info", Summary: "kept"}, nil)
	tb.mustCall(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: "a1"}, nil)
	tb.mustCall(t, schemas.APIJobsDelete, schemas.JobRef{Name: "web", Version: "1"}, nil)
	waitFor(t, "the resolved alert and the deleted job to leave", func() bool {
		_, errA := tb.b.st.alerts.Get(ctx, "a1")
		_, errJ := tb.b.st.jobs.Get(ctx, jobKey("web", "1"))
		return isNotFound(errA) && isNotFound(errJ)
	})
	if _, err := tb.b.st.alerts.Get(ctx, "a2"); err != nil {
		t.Fatalf("a firing alert left the bucket: %v", err)
	}
	// Once gone, the name can be used again from scratch.
	tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "y"}, nil)
}

// A second broker on a data dir in use refuses to start, names the
// first, and writes nothing there.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	startBroker(t, Config{DataDir: dir, Listen: "127.0.0.1:0"})
	before := snapshotDir(t, dir)
	b2, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	err = b2.Run(context.Background())
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), "broker pid ") || !strings.Contains(err.Error(), "another --data-dir") {
		t.Fatalf("second broker on the data dir: %v", err)
	}
	if after := snapshotDir(t, dir); after != before {
		t.Fatalf("the refused broker changed the data dir:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshotDir lists the files of dir outside JetStream's store (which the
// running broker changes itself) with their sizes and times.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || strings.Contains(p, "jetstream") {
			return nil
		}
		b.WriteString(p + " " + fi.ModTime().String() + ";")
		return nil
	})
	return b.String()
}

// A hook that hangs holds up only what waits on it: with more alerts stuck
// behind it than there are object slots, deploys and lists still run.
func TestHungHookHoldsUpOnlyItsOwn(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), MaxConcurrentObjects: 8})
	release := make(chan struct{})
	pre := schemas.HookAlertPreNotify
	hookPlugin(t, s.ClientURL(), tb, "hung", 0, []schemas.HookSpec{{Hook: pre, FailurePolicy: "ignore", Timeout: schemas.Duration(20 * time.Second)}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: func(schemas.HookRequest) (schemas.HookResponse, error) {
			<-release
			return schemas.HookResponse{}, nil
		}})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = wire.Call(ctx, tb.nc, wire.APISubject("plugbus", schemas.APIAlertsFire), schemas.AlertFireRequest{ID: "stuck-" + string(rune('a'+i)), Severity: "info", Summary: "s"}, nil)
		})
	}
	waitFor(t, "the hung hook to hold 8 alerts", func() bool { return len(tb.b.seq.sem("alert/x")) == 8 })
	// These must not wait for the hung hook (which answers only when
	// released, after them).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wire.Call(ctx, tb.nc, wire.APISubject("plugbus", schemas.APIJobsDeploy), schemas.JobDeployRequest{Name: "web", Version: "1", Image: "x"}, nil); err != nil {
		t.Fatalf("a deploy waited on alerts' hung hook: %v", err)
	}
	if err := wire.Call(ctx, tb.nc, wire.APISubject("plugbus", schemas.APIPluginsList), schemas.PluginListRequest{}, nil); err != nil {
		t.Fatalf("plugins.list: %v", err)
	}
	close(release)
	wg.Wait()
}

// An operation whose caller's deadline passes while a hook runs is not
// completed behind its back: the hook's time is cut to the deadline, and
// the deploy is refused with nothing stored.
func TestDeadlineNotCompletedLater(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	pre := schemas.HookJobPreDeploy
	release := make(chan struct{})
	defer close(release)
	hookPlugin(t, s.ClientURL(), tb, "slow", 0, []schemas.HookSpec{{Hook: pre, FailurePolicy: "fail", Timeout: schemas.Duration(30 * time.Second)}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: func(schemas.HookRequest) (schemas.HookResponse, error) {
			<-release
			return schemas.HookResponse{}, nil
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var resp json.RawMessage
	err := wire.Call(ctx, tb.nc, wire.APISubject("plugbus", schemas.APIJobsDeploy), schemas.JobDeployRequest{Name: "late", Version: "1", Image: "x"}, &resp)
	e := wantCode(t, err, schemas.CodeTimeout, "")
	if e.Plugin != "slow" || !strings.Contains(e.Message, "caller's deadline") {
		t.Fatalf("the refusal must say the hook ran out of the caller's time: %+v", e)
	}
	if err := tb.call(t, schemas.APIJobsGet, schemas.JobRef{Name: "late", Version: "1"}, nil); !errors.Is(err, schemas.ErrNotFound) {
		t.Fatalf("the timed-out deploy was stored: %v", err)
	}
}

// A stopping broker lets the requests in flight finish with their own
// deadlines: the stop is not their cancellation.
func TestStopLetsRequestsFinish(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	pre := schemas.HookJobPreDeploy
	entered := make(chan struct{})
	release := make(chan struct{})
	hookPlugin(t, s.ClientURL(), tb, "slow", 0, []schemas.HookSpec{{Hook: pre, FailurePolicy: "fail", Timeout: schemas.Duration(20 * time.Second)}},
		map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: func(schemas.HookRequest) (schemas.HookResponse, error) {
			close(entered)
			<-release
			return schemas.HookResponse{}, nil
		}})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- wire.Call(ctx, nc, wire.APISubject("plugbus", schemas.APIJobsDeploy), schemas.JobDeployRequest{Name: "inflight", Version: "1", Image: "x"}, nil)
	}()
	<-entered
	tb.cancel() // SIGTERM
	// New requests are no longer taken...
	waitFor(t, "the API to stop taking requests", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := wire.Call(ctx, nc, wire.APISubject("plugbus", schemas.APIPluginsList), schemas.PluginListRequest{}, nil)
		return errors.Is(err, schemas.ErrNoResponders)
	})
	// ...and the one in flight completes.
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the request in flight during the stop failed: %v", err)
	}
	if err := <-tb.done; err != nil {
		t.Fatalf("broker stop: %v", err)
	}
	tb.cancel = nil
}

// A bus made before retention (buckets with five revisions and no TTLs)
// is upgraded in place at start.
func TestBucketsUpgradeInPlace(t *testing.T) {
	s := startServer(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schemas.BucketAlerts, History: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "from-before", []byte(`{"id":"from-before","severity":"info","summary":"s","status":"firing","fired_at":"2026-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), AlertRetention: time.Second})
	st, err := tb.b.st.alerts.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 || st.LimitMarkerTTL() == 0 {
		t.Fatalf("alerts bucket not upgraded: history %d, marker TTL %s", st.History(), st.LimitMarkerTTL())
	}
	tb.mustCall(t, schemas.APIAlertsResolve, schemas.AlertRef{ID: "from-before"}, nil)
	waitFor(t, "the resolved alert from before to leave", func() bool {
		_, err := tb.b.st.alerts.Get(ctx, "from-before")
		return isNotFound(err)
	})
}
