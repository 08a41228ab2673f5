package broker_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

// recorder is an SDK plugin handling alert.v1.fired: it refuses every
// event for good (sdk.Permanent) until accept is set, and records the ids
// of the events it handled, in order.
type recorder struct {
	p      *sdk.Plugin
	accept atomic.Bool
	mu     sync.Mutex
	ids    []string
	// from holds, per handled event, the dead letter it was replayed
	// from (sdk.Delivery.DeadLetter).
	from []uint64
}

func newRecorder(t *testing.T, bus *plugintest.Bus, name string, accept bool) *recorder {
	t.Helper()
	p, err := sdk.New(schemas.Manifest{Name: name, Version: "1.0.0", Description: "records alerts",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, MaxDeliver: 3}}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{p: p}
	r.accept.Store(accept)
	p.HandleEvent(schemas.TypeAlertFired, func(ctx context.Context, e event.Event) error {
		if !r.accept.Load() {
			return sdk.Permanent(errors.New("the sink is down for good"))
		}
		d, _ := sdk.DeliveryFromContext(ctx)
		r.mu.Lock()
		r.ids = append(r.ids, e.ID())
		r.from = append(r.from, d.DeadLetter)
		r.mu.Unlock()
		return nil
	})
	bus.StartPlugin(t, p)
	return r
}

func (r *recorder) handled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

// settled reports whether a plugin's consumer has nothing left to deliver
// or in flight, and every advisory went through the dead-letter path.
func settled(bus *plugintest.Bus, plugin string) bool {
	ctx := context.Background()
	cons, err := bus.JetStream().Consumer(ctx, schemas.StreamEvents, schemas.ConsumerName(plugin))
	if err != nil {
		return false
	}
	info, err := cons.Info(ctx)
	if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		return false
	}
	adv, err := bus.JetStream().Stream(ctx, schemas.StreamAdvisories)
	if err != nil {
		return false
	}
	ai, err := adv.Info(ctx)
	return err == nil && ai.State.Msgs == 0
}

// A dead letter replayed goes back to the plugin that gave up on it, once,
// with its original event id, and to no other plugin; the replay is
// recorded, a second one says it was already replayed, and a purge removes
// the dead letter.
func TestDLQReplay(t *testing.T) {
	bus := plugintest.Start(t)
	flaky := newRecorder(t, bus, "flaky", false)
	other := newRecorder(t, bus, "bystander", true)

	var fired schemas.AlertResponse
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "disk-full", Severity: schemas.SeverityCritical, Summary: "disk full"}, &fired)
	bus.WaitFor(t, func() bool {
		return settled(bus, "flaky") && settled(bus, "bystander") && len(bus.DeadLetters(t, "flaky")) == 1
	})
	if got := other.handled(); !slices.Equal(got, []string{fired.EventID}) {
		t.Fatalf("bystander handled %v, want [%s]", got, fired.EventID)
	}

	var list schemas.DLQListResponse
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{}, &list)
	if len(list.DeadLetters) != 1 || list.Pending != 1 || list.NextSeq != 0 {
		t.Fatalf("dlq.list: %+v", list)
	}
	dl := list.DeadLetters[0]
	if dl.Consumer != "plugin_flaky" || dl.EventID != fired.EventID || dl.EventType != schemas.TypeAlertFired ||
		dl.Code != schemas.ReasonPermanent || dl.Subject != "plugbus.evt.alert.v1.fired" || dl.Replay != nil || dl.EventSubject != "alert/disk-full" {
		t.Fatalf("dead letter: %+v", dl)
	}
	// Filters.
	var none schemas.DLQListResponse
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{Consumer: "plugin_bystander"}, &none)
	if len(none.DeadLetters) != 0 || none.Pending != 0 {
		t.Errorf("dlq.list of bystander: %+v", none)
	}
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{Code: schemas.ReasonMalformed}, &none)
	if len(none.DeadLetters) != 0 {
		t.Errorf("dlq.list of malformed_event: %+v", none)
	}

	// A durable made before redeliveries existed (no redelivery filter)
	// gets the filter when a dead letter is replayed to it.
	ctx := context.Background()
	cons, err := bus.JetStream().Consumer(ctx, schemas.StreamEvents, "plugin_flaky")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.FilterSubjects = []string{wire.EventSubject(bus.Prefix(), schemas.TypeAlertFired)}
	if _, err := bus.JetStream().UpdateConsumer(ctx, schemas.StreamEvents, cfg); err != nil {
		t.Fatal(err)
	}

	flaky.accept.Store(true)
	var rep schemas.DLQReplayResponse
	bus.MustCall(t, schemas.APIDLQReplay, schemas.DLQReplayRequest{Seqs: []uint64{dl.Seq}, RequestedBy: "ops@test"}, &rep)
	if len(rep.Results) != 1 || rep.Results[0].Status != schemas.ReplayReplayed || rep.Results[0].Replay == nil {
		t.Fatalf("dlq.replay: %+v", rep)
	}
	r := *rep.Results[0].Replay
	if r.ReplayedBy != schemas.ReplayedByAdmin || r.RequestedBy != "ops@test" || r.DLQSeq != dl.Seq || r.EventID != fired.EventID ||
		r.Subject != "plugbus.evt.redeliver.plugin_flaky.alert.v1.fired" || r.EventSeq == 0 || r.ReplayedAt.IsZero() {
		t.Fatalf("replay record: %+v", r)
	}
	bus.WaitFor(t, func() bool { return len(flaky.handled()) == 1 && settled(bus, "flaky") })
	if got := flaky.handled(); got[0] != fired.EventID {
		t.Fatalf("flaky handled %v, want the original id %s", got, fired.EventID)
	}
	flaky.mu.Lock()
	from := slices.Clone(flaky.from)
	flaky.mu.Unlock()
	if !slices.Equal(from, []uint64{dl.Seq}) {
		t.Errorf("the replayed event's Delivery.DeadLetter = %v, want [%d]", from, dl.Seq)
	}
	other.mu.Lock()
	if !slices.Equal(other.from, []uint64{0}) {
		t.Errorf("the bystander's first delivery has DeadLetter %v, want 0", other.from)
	}
	other.mu.Unlock()
	// The bystander's consumer does not take the redelivery: it has
	// nothing pending, and it delivered nothing at or after it.
	bc, err := bus.JetStream().Consumer(ctx, schemas.StreamEvents, "plugin_bystander")
	if err != nil {
		t.Fatal(err)
	}
	bi, err := bc.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bi.NumPending != 0 || bi.Delivered.Stream >= r.EventSeq || !slices.Equal(other.handled(), []string{fired.EventID}) {
		t.Fatalf("bystander: pending %d, delivered up to %d (redelivery at %d), handled %v", bi.NumPending, bi.Delivered.Stream, r.EventSeq, other.handled())
	}

	// The redelivery as stored: the event's own headers, and where it came from.
	var stored schemas.StoredMessage
	bus.MustCall(t, schemas.APIEventsGet, schemas.EventGetRequest{Seq: r.EventSeq}, &stored)
	h := stored.Header
	if stored.Subject != r.Subject || h["ce-id"][0] != fired.EventID || h[schemas.HeaderRedeliveryOf][0] != strconv.FormatUint(dl.Seq, 10) ||
		h[schemas.HeaderDLQReason] != nil {
		t.Fatalf("redelivery: %+v", stored)
	}
	// By id, the first message with it: the original.
	var byID schemas.StoredMessage
	bus.MustCall(t, schemas.APIEventsGet, schemas.EventGetRequest{ID: fired.EventID}, &byID)
	if byID.Seq != dl.StreamSeq || byID.Subject != "plugbus.evt.alert.v1.fired" {
		t.Fatalf("events.get by id: seq %d subject %s, want %d", byID.Seq, byID.Subject, dl.StreamSeq)
	}

	// Once: a second replay publishes nothing and says when the first was.
	before := streamLastSeq(t, bus)
	var again schemas.DLQReplayResponse
	bus.MustCall(t, schemas.APIDLQReplay, schemas.DLQReplayRequest{Seqs: []uint64{dl.Seq, 999}}, &again)
	if len(again.Results) != 2 || again.Results[0].Status != schemas.ReplayAlreadyReplayed || again.Results[0].Replay == nil ||
		!again.Results[0].Replay.ReplayedAt.Equal(r.ReplayedAt) {
		t.Fatalf("second replay: %+v", again)
	}
	if res := again.Results[1]; res.Status != schemas.ReplayFailed || res.Error == nil || res.Error.Code != schemas.CodeNotFound {
		t.Fatalf("replay of a dead letter that is not there: %+v", res)
	}
	if after := streamLastSeq(t, bus); after != before {
		t.Fatalf("a second replay stored %d messages", after-before)
	}
	var shown schemas.DeadLetter
	bus.MustCall(t, schemas.APIDLQGet, schemas.DLQRef{Seq: dl.Seq}, &shown)
	if shown.Replay == nil || shown.Replay.EventSeq != r.EventSeq || shown.Message == nil || len(shown.Message.Data) == 0 {
		t.Fatalf("dlq.get: %+v", shown)
	}

	// Purge.
	var purged schemas.DLQPurgeResponse
	bus.MustCall(t, schemas.APIDLQPurge, schemas.DLQPurgeRequest{Seqs: []uint64{dl.Seq}}, &purged)
	if purged.Purged != 1 || len(purged.NotFound) != 0 {
		t.Fatalf("purge: %+v", purged)
	}
	bus.MustCall(t, schemas.APIDLQPurge, schemas.DLQPurgeRequest{Seqs: []uint64{dl.Seq}}, &purged)
	if purged.Purged != 0 || !slices.Equal(purged.NotFound, []uint64{dl.Seq}) {
		t.Fatalf("purge again: %+v", purged)
	}
	err = bus.Call(schemas.APIDLQGet, schemas.DLQRef{Seq: dl.Seq}, &shown)
	if !errors.Is(err, schemas.ErrNotFound) {
		t.Fatalf("dlq.get of a purged dead letter: %v", err)
	}
}

func streamLastSeq(t *testing.T, bus *plugintest.Bus) uint64 {
	t.Helper()
	s, err := bus.JetStream().Stream(context.Background(), schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// A dead letter whose plugin is gone cannot be replayed: the result names
// the consumer; purging by consumer and purging all empty the stream.
func TestDLQReplayToAGoneConsumer(t *testing.T) {
	bus := plugintest.Start(t)
	newRecorder(t, bus, "gone", false)
	newRecorder(t, bus, "flaky", false)
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityInfo, Summary: "x"}, nil)
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a2", Severity: schemas.SeverityInfo, Summary: "y"}, nil)
	bus.WaitFor(t, func() bool {
		return settled(bus, "gone") && settled(bus, "flaky") && len(bus.DeadLetters(t, "gone")) == 2 && len(bus.DeadLetters(t, "flaky")) == 2
	})
	var list schemas.DLQListResponse
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{Consumer: "plugin_gone", Limit: 1}, &list)
	if len(list.DeadLetters) != 1 || list.Pending != 2 || list.NextSeq == 0 {
		t.Fatalf("first page: %+v", list)
	}
	var page2 schemas.DLQListResponse
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{Consumer: "plugin_gone", Limit: 1, FromSeq: list.NextSeq}, &page2)
	if len(page2.DeadLetters) != 1 || page2.DeadLetters[0].Seq <= list.DeadLetters[0].Seq || page2.DeadLetters[0].Consumer != "plugin_gone" {
		t.Fatalf("second page: %+v", page2)
	}
	if err := bus.JetStream().DeleteConsumer(context.Background(), schemas.StreamEvents, "plugin_gone"); err != nil {
		t.Fatal(err)
	}
	var rep schemas.DLQReplayResponse
	bus.MustCall(t, schemas.APIDLQReplay, schemas.DLQReplayRequest{Seqs: []uint64{list.DeadLetters[0].Seq}}, &rep)
	if res := rep.Results[0]; res.Status != schemas.ReplayFailed || res.Error == nil || res.Error.Code != schemas.CodeNotFound ||
		res.Error.Details[schemas.DetailKind] != "consumer" || res.Error.Details[schemas.DetailName] != "plugin_gone" {
		t.Fatalf("replay to a gone consumer: %+v", res)
	}
	var purged schemas.DLQPurgeResponse
	bus.MustCall(t, schemas.APIDLQPurge, schemas.DLQPurgeRequest{Consumer: "plugin_gone"}, &purged)
	if purged.Purged != 2 {
		t.Fatalf("purge by consumer: %+v", purged)
	}
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{}, &list)
	if len(list.DeadLetters) != 2 || list.DeadLetters[0].Consumer != "plugin_flaky" {
		t.Fatalf("after purging plugin_gone: %+v", list)
	}
	bus.MustCall(t, schemas.APIDLQPurge, schemas.DLQPurgeRequest{All: true}, &purged)
	bus.MustCall(t, schemas.APIDLQList, schemas.DLQListRequest{}, &list)
	if purged.Purged != 2 || len(list.DeadLetters) != 0 {
		t.Fatalf("purge all: %+v, then %+v", purged, list)
	}
	// Bad requests name what is wrong.
	for _, req := range []any{schemas.DLQPurgeRequest{}, map[string]any{"seqs": []int{}}, map[string]any{"all": false}} {
		if err := bus.Call(schemas.APIDLQPurge, req, nil); !errors.Is(err, schemas.ErrInvalidField) && !errors.Is(err, schemas.ErrBadRequest) {
			t.Errorf("purge %v: %v", req, err)
		}
	}
}

// A plugin whose type pattern also matches other consumers' redelivery
// subjects (io.plugbus.*.*.*.*.* matches
// plugbus.evt.redeliver.plugin_flaky.alert.v1.fired) is not handed a
// dead letter replayed to another plugin: the SDK acknowledges it
// unhandled, and nothing is dead-lettered for it.
func TestDLQReplayNotToAWildcardPlugin(t *testing.T) {
	bus := plugintest.Start(t)
	flaky := newRecorder(t, bus, "flaky", false)
	p, err := sdk.New(schemas.Manifest{Name: "wild", Version: "1.0.0", Description: "takes five-token types",
		Events: &schemas.EventSubscription{Types: []string{"io.plugbus.*.*.*.*.*"}}}, sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	var wild atomic.Int64
	p.HandleEvent("*", func(context.Context, event.Event) error { wild.Add(1); return nil })
	bus.StartPlugin(t, p)
	cons, err := bus.JetStream().Consumer(context.Background(), schemas.StreamEvents, "plugin_wild")
	if err != nil {
		t.Fatal(err)
	}
	if f := cons.CachedInfo().Config.FilterSubjects; !slices.Equal(f, []string{"plugbus.evt.*.*.*.*.*"}) {
		t.Fatalf("wild's filters %v: its pattern overlaps its redelivery subjects, which JetStream refuses", f)
	}

	var fired schemas.AlertResponse
	bus.MustCall(t, schemas.APIAlertsFire, schemas.AlertFireRequest{ID: "a1", Severity: schemas.SeverityInfo, Summary: "x"}, &fired)
	bus.WaitFor(t, func() bool { return settled(bus, "flaky") && len(bus.DeadLetters(t, "flaky")) == 1 })
	flaky.accept.Store(true)
	var rep schemas.DLQReplayResponse
	bus.MustCall(t, schemas.APIDLQReplay, schemas.DLQReplayRequest{Seqs: []uint64{1}}, &rep)
	if rep.Results[0].Status != schemas.ReplayReplayed {
		t.Fatalf("replay: %+v", rep.Results[0])
	}
	at := rep.Results[0].Replay.EventSeq
	// wild's consumer took the redelivery (its filter matches) and the
	// SDK acknowledged it without calling the handler.
	bus.WaitFor(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= at && info.NumAckPending == 0 && len(flaky.handled()) == 1 && settled(bus, "flaky")
	})
	if n := wild.Load(); n != 0 {
		t.Errorf("wild handled %d events, want none", n)
	}
	if dls := bus.DeadLetters(t, "wild"); len(dls) != 0 {
		t.Errorf("wild dead-lettered %d events", len(dls))
	}
}
