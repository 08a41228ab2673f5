package broker

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func manifest(name, version string) schemas.Manifest {
	return schemas.Manifest{Name: name, Version: version}
}

func TestLifecycleToActiveAndIdempotentRegister(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	m := manifest("alpha", "1.0.0")
	m.RequiredParams = []string{"url"}
	m.ConfigSchema = json.RawMessage(`{"type":"object","properties":{"url":{"type":"string"},"retries":{"type":"integer"}}}`)
	p := newFakePlugin(t, s.ClientURL(), m)
	p.start("plugbus")

	// Missing required param: ERROR with the param named, plugin never configured.
	resp := p.register(t, tb, nil)
	if resp.Plugin.State != schemas.StateError {
		t.Fatalf("state %s, want ERROR", resp.Plugin.State)
	}
	wantCode(t, resp.Plugin.LastError, schemas.CodeMissingParam, "config.url")
	if len(p.configs) != 0 {
		t.Fatalf("plugin saw config before required params were set: %v", p.configs)
	}

	// Config failing the plugin's schema is refused by the broker.
	var rec schemas.PluginRecord
	err := tb.call(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "alpha", Set: map[string]any{"url": "http://x", "retries": "many"}}, &rec)
	wantCode(t, err, schemas.CodeInvalidField, "config.retries")

	// A valid config brings it to ACTIVE and is stored where instances watch.
	tb.mustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "alpha", Set: map[string]any{"url": "http://x"}}, &rec)
	if rec.State != schemas.StateActive || rec.LastError != nil {
		t.Fatalf("after config: %s %v", rec.State, rec.LastError)
	}
	kv, _ := tb.js.KeyValue(context.Background(), schemas.BucketConfigs)
	e, err := kv.Get(context.Background(), "alpha")
	if err != nil || string(e.Value()) != `{"url":"http://x"}` {
		t.Fatalf("stored config: %v %v", e, err)
	}

	// Same manifest again: idempotent, unchanged, still ACTIVE.
	resp = p.register(t, tb, nil)
	if resp.Changed || resp.Plugin.State != schemas.StateActive {
		t.Fatalf("re-register: changed=%v state=%s", resp.Changed, resp.Plugin.State)
	}
	if resp.Plugin.Metadata["fake"] != true {
		t.Fatalf("init metadata not stored: %v", resp.Plugin.Metadata)
	}

	var list schemas.PluginListResponse
	tb.mustCall(t, schemas.APIPluginsList, schemas.PluginListRequest{}, &list)
	if len(list.Plugins) != 1 || list.Plugins[0].Name != "alpha" {
		t.Fatalf("list: %+v", list)
	}
	err = tb.call(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "nope"}, &rec)
	wantCode(t, err, schemas.CodeNotFound, "name")
}

func TestLifecycleErrors(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})

	t.Run("init error is kept", func(t *testing.T) {
		p := newFakePlugin(t, s.ClientURL(), manifest("broken-init", "1.0.0"))
		p.initErr = &schemas.Error{Code: schemas.CodePluginError, Message: "cannot reach backend"}
		p.start("plugbus")
		resp := p.register(t, tb, nil)
		if resp.Plugin.State != schemas.StateError {
			t.Fatalf("state %s", resp.Plugin.State)
		}
		e := wantCode(t, resp.Plugin.LastError, schemas.CodePluginError, "")
		if e.Plugin != "broken-init" {
			t.Fatalf("error does not name the plugin: %+v", e)
		}
	})
	t.Run("verify not ready", func(t *testing.T) {
		p := newFakePlugin(t, s.ClientURL(), manifest("not-ready", "1.0.0"))
		p.notReady = "database down"
		p.start("plugbus")
		resp := p.register(t, tb, nil)
		if resp.Plugin.State != schemas.StateError {
			t.Fatalf("state %s", resp.Plugin.State)
		}
		wantCode(t, resp.Plugin.LastError, schemas.CodePluginError, "")
	})
	t.Run("no instance answers", func(t *testing.T) {
		p := newFakePlugin(t, s.ClientURL(), manifest("ghost", "1.0.0"))
		resp := p.register(t, tb, nil)
		if resp.Plugin.State != schemas.StateError {
			t.Fatalf("state %s", resp.Plugin.State)
		}
		wantCode(t, resp.Plugin.LastError, schemas.CodeNoResponders, "")
	})
}

func TestStaleAndBack(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), HeartbeatInterval: 50 * time.Millisecond})
	p := newFakePlugin(t, s.ClientURL(), actionManifest("flaky", schemas.ActionSpec{Command: "x", Model: "machines"}))
	p.start("plugbus")
	if st := p.register(t, tb, nil).Plugin.State; st != schemas.StateActive {
		t.Fatalf("state %s", st)
	}
	state := func() schemas.PluginState {
		var rec schemas.PluginRecord
		tb.mustCall(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "flaky"}, &rec)
		return rec.State
	}
	p.stopService()
	waitFor(t, "STALE", func() bool { return state() == schemas.StateStale })

	// An action on a STALE plugin is refused with the reason.
	err := tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m", Command: "x"}, nil)
	wantCode(t, err, schemas.CodeNotActive, "command")

	p.start("plugbus")
	waitFor(t, "ACTIVE again", func() bool { return state() == schemas.StateActive })
}

// A plugin whose instance is connected but does not answer its pings (a
// hung or frozen process) goes STALE only after staleAfterMisses pings in
// a row timed out: one late answer on a loaded host is not a lost plugin.
func TestStaleAfterMissedPings(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL(), HeartbeatInterval: 50 * time.Millisecond})
	p := newFakePlugin(t, s.ClientURL(), manifest("frozen", "1.0.0"))
	p.start("plugbus")
	if st := p.register(t, tb, nil).Plugin.State; st != schemas.StateActive {
		t.Fatalf("state %s", st)
	}
	// The instance stays connected but stops answering: a subscriber on
	// its ping subject that never replies makes every ping time out
	// instead of finding no responders.
	var pings atomic.Int64
	sub, err := p.nc.Subscribe(wire.PingSubject(wire.PluginService("frozen")), func(*nats.Msg) { pings.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p.stopService()
	var rec schemas.PluginRecord
	waitFor(t, "STALE", func() bool {
		tb.mustCall(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "frozen"}, &rec)
		return rec.State == schemas.StateStale
	})
	if n := pings.Load(); n < staleAfterMisses {
		t.Fatalf("STALE after %d unanswered pings, want at least %d", n, staleAfterMisses)
	}
	e := wantCode(t, rec.LastError, schemas.CodeNoResponders, "")
	if !strings.Contains(e.Message, "timed out") {
		t.Fatalf("reason %q does not say the pings timed out", e.Message)
	}
}

func TestMissedPingsCount(t *testing.T) {
	var r registry
	timeout := context.DeadlineExceeded
	for i := 1; i < staleAfterMisses; i++ {
		if r.missed("p", timeout) {
			t.Fatalf("gone after %d timeouts", i)
		}
	}
	if r.missed("p", nil) {
		t.Fatal("an answer counts as gone")
	}
	for i := 1; i < staleAfterMisses; i++ {
		if r.missed("p", timeout) {
			t.Fatalf("an answer did not reset the count: gone after %d timeouts", i)
		}
	}
	if !r.missed("p", timeout) {
		t.Fatalf("not gone after %d timeouts in a row", staleAfterMisses)
	}
	if !r.missed("q", nats.ErrNoResponders) {
		t.Fatal("no responders does not count as gone at once")
	}
}

func actionManifest(name string, actions ...schemas.ActionSpec) schemas.Manifest {
	m := manifest(name, "1.0.0")
	m.Actions = actions
	return m
}

func TestActionRouting(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()

	inc := newFakePlugin(t, s.ClientURL(), actionManifest("inc",
		schemas.ActionSpec{Command: "increment", Model: "machines", OptionalParams: []string{"inc/step"}},
		schemas.ActionSpec{Command: "reset", Model: "machines", RequiredParams: []string{"inc/touched"}},
	))
	inc.result = map[string]any{"value": 7}
	inc.start("plugbus")
	inc.register(t, tb, nil)

	// Observe the action events.
	cons, err := tb.js.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"plugbus.evt.machine.>"},
	})
	if err != nil {
		t.Fatal(err)
	}

	tb.mustCall(t, schemas.APIMachinesSetParam, schemas.MachineSetParamRequest{Machine: "m1", Param: "inc/step", Value: 5}, nil)
	var ar schemas.MachineActionResponse
	tb.mustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "increment"}, &ar)
	if ar.Plugin != "inc" || string(ar.Result) != `{"value":7}` {
		t.Fatalf("action response: %+v %s", ar, ar.Result)
	}
	got := inc.lastActions()
	if len(got) != 1 || got[0].Object != "m1" || got[0].Params["inc/step"] != float64(5) || got[0].Model != "machines" {
		t.Fatalf("plugin saw %+v; want the optional param filled from the machine", got)
	}

	// Required param enforced before the plugin sees the call.
	err = tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "reset"}, nil)
	wantCode(t, err, schemas.CodeMissingParam, "params.inc/touched")
	if n := len(inc.lastActions()); n != 1 {
		t.Fatalf("plugin called %d times; the refused call must not reach it", n)
	}

	// The plugin's own error comes back with its code and name.
	inc.actErr = &schemas.Error{Code: schemas.CodeConflict, Message: "machine busy"}
	err = tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "reset", Params: map[string]any{"inc/touched": true}}, nil)
	e := wantCode(t, err, schemas.CodeConflict, "")
	if e.Plugin != "inc" {
		t.Fatalf("error does not name the plugin: %+v", e)
	}

	// A second plugin offering increment makes it ambiguous until one is named.
	inc2 := newFakePlugin(t, s.ClientURL(), actionManifest("inc2", schemas.ActionSpec{Command: "increment", Model: "machines"}))
	inc2.result = "second"
	inc2.start("plugbus")
	inc2.register(t, tb, nil)
	err = tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "increment"}, nil)
	e = wantCode(t, err, schemas.CodeAmbiguousAction, "plugin")
	if names, _ := e.Details["plugins"].([]any); len(names) != 2 {
		t.Fatalf("ambiguous error must list both plugins: %+v", e.Details)
	}
	tb.mustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "increment", Plugin: "inc2"}, &ar)
	if ar.Plugin != "inc2" || string(ar.Result) != `"second"` {
		t.Fatalf("explicit plugin: %+v", ar)
	}

	// requested + completed for each routed call: ok, failed, ok.
	var types, statuses []string
	for len(types) < 6 {
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(mctx))
		cancel()
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		ev, err := wire.DecodeEvent(ctx, natsMsgFrom(msg))
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type())
		if ev.Type() == schemas.TypeMachineActionCompleted {
			var d schemas.MachineActionCompletedData
			_ = ev.DataAs(&d)
			statuses = append(statuses, d.Status)
			if d.Status == schemas.ActionFailed && (d.Error == nil || d.Error.Code != schemas.CodeConflict) {
				t.Fatalf("failed action event lacks the error: %+v", d)
			}
		}
	}
	want := []string{"succeeded", "failed", "succeeded"}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("completed statuses %v, want %v (types %v)", statuses, want, types)
		}
	}
}

func TestDeadLetterKeepsEventAndReason(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()
	m := manifest("sink", "1.0.0")
	m.Events = &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, MaxDeliver: 2, AckWait: schemas.Duration(30 * time.Second)}
	p := newFakePlugin(t, s.ClientURL(), m)
	p.start("plugbus")
	if rec := p.register(t, tb, nil).Plugin; rec.Consumer != "plugin_sink" || rec.State != schemas.StateActive {
		t.Fatalf("record: %+v", rec)
	}
	cons, err := tb.js.Consumer(ctx, schemas.StreamEvents, "plugin_sink")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	// Its event type, and the redeliveries of dead letters to it (dlq replay).
	if cfg.MaxDeliver != 2 || len(cfg.FilterSubjects) != 2 || cfg.FilterSubjects[0] != "plugbus.evt.alert.v1.fired" ||
		cfg.FilterSubjects[1] != "plugbus.evt.redeliver.plugin_sink.>" {
		t.Fatalf("consumer config from manifest not applied: %+v", cfg)
	}

	var a1, a2 schemas.AlertResponse
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "critical", Summary: "disk full"}, &a1)
	tb.mustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{Severity: "info", Summary: "fyi"}, &a2)
	// A non-CloudEvent published on an event subject.
	if _, err := tb.js.Publish(ctx, "plugbus.evt.alert.v1.fired", []byte("garbage")); err != nil {
		t.Fatal(err)
	}

	// Act as the plugin: terminate the first, nak the second until max
	// deliver, terminate the malformed one as the SDK does.
	handled := map[string]int{}
	for done := 0; done < 3; {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			switch id := msg.Headers().Get("ce-id"); id {
			case a1.EventID:
				_ = msg.TermWithReason("permanent: webhook answered 400")
				done++
			case a2.EventID:
				handled[id]++
				_ = msg.Nak()
				if handled[id] == 2 {
					done++
				}
			default:
				_ = msg.TermWithReason("malformed cloudevent: no ce-specversion")
				done++
			}
		}
		cancel()
	}

	// The server gives up on the nak'ed message (and advises so) when the
	// consumer next asks for messages, as a running plugin always does.
	extra, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range extra.Messages() {
		t.Fatalf("message delivered beyond max deliver: %s", msg.Headers().Get("ce-id"))
	}

	dlq, _ := tb.js.Stream(ctx, schemas.StreamDLQ)
	waitFor(t, "3 dead letters", func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs == 3
	})
	byID := map[string]*jetstream.RawStreamMsg{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		byID[m.Header.Get("ce-id")] = m
		if m.Subject != "plugbus.dlq.plugin_sink" || m.Header.Get(schemas.HeaderDLQConsumer) != "plugin_sink" {
			t.Fatalf("dead letter placed wrong: %s %v", m.Subject, m.Header)
		}
	}
	d1 := byID[a1.EventID]
	if d1 == nil || d1.Header.Get(schemas.HeaderDLQReason) != "permanent: webhook answered 400" || d1.Header.Get(schemas.HeaderDLQCause) != schemas.CauseTerminated {
		t.Fatalf("terminated event: %+v", d1)
	}
	ev, err := wire.DecodeEvent(ctx, natsMsg(d1))
	if err != nil || ev.ID() != a1.EventID || ev.Type() != schemas.TypeAlertFired {
		t.Fatalf("original CloudEvent not intact in the DLQ: %v %v", ev, err)
	}
	d2 := byID[a2.EventID]
	if d2 == nil || d2.Header.Get(schemas.HeaderDLQCause) != schemas.CauseMaxDeliveries || d2.Header.Get(schemas.HeaderDLQDeliveries) != "2" {
		t.Fatalf("max deliveries event: %+v", d2)
	}
	d3 := byID[""]
	if d3 == nil || string(d3.Data) != "garbage" || d3.Header.Get(schemas.HeaderDLQReason) != "malformed cloudevent: no ce-specversion" {
		t.Fatalf("malformed event: %+v", d3)
	}
	if seq, _ := strconv.Atoi(d3.Header.Get(schemas.HeaderDLQStreamSeq)); seq == 0 {
		t.Fatalf("stream seq missing: %v", d3.Header)
	}
}

func TestNewVersionKeepsConsumerPosition(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()
	m := manifest("watcher", "1.0.0")
	m.Events = &schemas.EventSubscription{Types: []string{"io.plugbus.job.v1.*"}}
	p := newFakePlugin(t, s.ClientURL(), m)
	p.start("plugbus")
	p.register(t, tb, nil)
	for i := 0; i < 4; i++ {
		tb.mustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "j", Version: strconv.Itoa(i), Image: "x"}, nil)
	}
	cons, _ := tb.js.Consumer(ctx, schemas.StreamEvents, "plugin_watcher")
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for msg := range batch.Messages() {
		_ = msg.DoubleAck(ctx)
		n++
	}
	if n != 2 {
		t.Fatalf("fetched %d", n)
	}

	p.stopService()
	m2 := m
	m2.Version = "2.0.0"
	p2 := newFakePlugin(t, s.ClientURL(), m2)
	p2.start("plugbus")
	resp := p2.register(t, tb, nil)
	if !resp.Changed || resp.Plugin.Version != "2.0.0" || resp.Plugin.State != schemas.StateActive {
		t.Fatalf("v2: %+v", resp)
	}
	cons, _ = tb.js.Consumer(ctx, schemas.StreamEvents, "plugin_watcher")
	batch, err = cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for msg := range batch.Messages() {
		ev, _ := wire.DecodeEvent(ctx, natsMsgFrom(msg))
		var d schemas.JobDeployedData
		_ = ev.DataAs(&d)
		versions = append(versions, d.Version)
		_ = msg.Ack()
	}
	if len(versions) != 2 || versions[0] != "2" || versions[1] != "3" {
		t.Fatalf("v2 got %v, want the 2 events v1 had not consumed", versions)
	}
}

// TestConfigChangeKeepsActive: changing an ACTIVE plugin's config never
// takes it out of ACTIVE (so it stays in its chains); a config the plugin
// refuses is not stored.
func TestConfigChangeKeepsActive(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	p := newFakePlugin(t, s.ClientURL(), manifest("cfg", "1.0.0"))
	p.start("plugbus")
	p.register(t, tb, map[string]any{"level": 1})

	sub, err := tb.nc.SubscribeSync("plugbus.evt.plugin.v1.state_changed")
	if err != nil {
		t.Fatal(err)
	}
	var rec schemas.PluginRecord
	tb.mustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "cfg", Set: map[string]any{"level": 2}}, &rec)
	if rec.State != schemas.StateActive || rec.Config["level"] != float64(2) {
		t.Fatalf("after change: %s %v", rec.State, rec.Config)
	}
	p.mu.Lock()
	p.cfgErr = &schemas.Error{Code: schemas.CodeInvalidField, Field: "config.level", Message: "level 3 is not supported"}
	p.mu.Unlock()
	err = tb.call(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "cfg", Set: map[string]any{"level": 3}}, &rec)
	wantCode(t, err, schemas.CodeInvalidField, "config.level")
	tb.mustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "cfg"}, &rec)
	if rec.State != schemas.StateActive || rec.Config["level"] != float64(2) {
		t.Fatalf("after a refused change: %s %v", rec.State, rec.Config)
	}
	if err := tb.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("config changes moved the plugin between states: %s", msg.Header.Get("ce-id"))
	}
}

func TestUnregister(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	ctx := context.Background()
	m := actionManifest("gone", schemas.ActionSpec{Command: "x", Model: "machines"})
	m.Events = &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}}
	m.Hooks = []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}
	p := newFakePlugin(t, s.ClientURL(), m)
	p.onHook(schemas.HookJobPreDeploy, cont)
	p.start("plugbus")
	p.register(t, tb, map[string]any{"a": 1})

	// Running instance: refused without force.
	err := tb.call(t, schemas.APIPluginsUnregister+".gone", schemas.PluginUnregisterRequest{Name: "gone"}, nil)
	wantCode(t, err, schemas.CodeConflict, "name")

	p.stopService()
	var rec schemas.PluginRecord
	tb.mustCall(t, schemas.APIPluginsUnregister+".gone", schemas.PluginUnregisterRequest{Name: "gone"}, &rec)
	if rec.Name != "gone" {
		t.Fatalf("reply: %+v", rec)
	}
	err = tb.call(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "gone"}, nil)
	wantCode(t, err, schemas.CodeNotFound, "name")
	if _, err := tb.js.Consumer(ctx, schemas.StreamEvents, "plugin_gone"); err == nil {
		t.Fatal("consumer left behind")
	}
	kv, _ := tb.js.KeyValue(ctx, schemas.BucketConfigs)
	if _, err := kv.Get(ctx, "gone"); err == nil {
		t.Fatal("config left behind")
	}
	if steps := tb.b.reg.chains()[schemas.HookJobPreDeploy]; len(steps) != 0 {
		t.Fatalf("hook chain still has %+v", steps)
	}
	err = tb.call(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m", Command: "x"}, nil)
	wantCode(t, err, schemas.CodeUnknownAction, "")
	err = tb.call(t, schemas.APIPluginsUnregister+".gone", schemas.PluginUnregisterRequest{Name: "gone"}, nil)
	wantCode(t, err, schemas.CodeNotFound, "name")
}

// A plugin cannot take a name the core uses: the manifest schema reserves
// them, and plugin services live under their own prefix, so no plugin
// service can be the broker's.
func TestReservedPluginNames(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	for _, name := range []string{"broker", "hostd", "admin", "v1", "v12"} {
		err := tb.call(t, schemas.APIPluginsRegister+"."+name, schemas.RegisterRequest{Manifest: schemas.Manifest{Name: name, Version: "1.0.0"}}, nil)
		e := wantCode(t, err, schemas.CodeInvalidField, "manifest.name")
		if !strings.Contains(e.Message, "reserved") {
			t.Errorf("%s: message %q does not say the name is reserved", name, e.Message)
		}
	}
	if got := wire.PluginService("broker"); got == wire.BrokerService || got == wire.HostService {
		t.Errorf("plugin service name %s collides with the core's", got)
	}
	if _, ok := wire.PluginFromService(wire.BrokerService); ok {
		t.Errorf("%s reads as a plugin's service", wire.BrokerService)
	}
	// Exactly one service answers as the broker: the broker.
	sub, err := tb.nc.SubscribeSync(tb.nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.nc.PublishRequest(wire.PingSubject(wire.BrokerService), sub.Subject, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the broker does not answer PING: %v", err)
	}
	if extra, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("a second service answers as the broker: %s", extra.Data)
	}
}
