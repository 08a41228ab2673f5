package plugintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

// flasher is a plugin with one long action, "flash", whose handler the
// test drives step by step: each value sent on steps is reported as
// progress once the handler gets it; closing steps ends the action with
// its result (or fail's error).
type flasher struct {
	steps chan float64
	// started is closed when the handler runs; ctxErr gets the handler's
	// context cause when the context ends before steps is closed.
	started chan struct{}
	ctxErr  chan error
	once    sync.Once
	calls   chan string
	fail    error
	// returned gets one value each time the handler returns.
	returned chan struct{}
}

func newFlasher() *flasher {
	return &flasher{steps: make(chan float64), started: make(chan struct{}), ctxErr: make(chan error, 1), calls: make(chan string, 16), returned: make(chan struct{}, 16)}
}

func (f *flasher) manifest(timeout time.Duration) schemas.Manifest {
	return schemas.Manifest{Name: "flasher", Version: "1.0.0", Actions: []schemas.ActionSpec{
		{Command: "flash", Model: "machines", Timeout: schemas.Duration(timeout)},
	}}
}

func (f *flasher) plugin(t *testing.T, bus *plugintest.Bus, timeout time.Duration, opts ...sdk.Option) *sdk.Plugin {
	t.Helper()
	p, err := sdk.New(f.manifest(timeout), append([]sdk.Option{sdk.WithPrefix(bus.Prefix()), sdk.WithActionAcceptAfter(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	p.HandleAction("flash", func(ctx context.Context, a *sdk.Action) (any, error) {
		f.calls <- a.ActionID
		f.once.Do(func() { close(f.started) })
		defer func() { f.returned <- struct{}{} }()
		for {
			select {
			case pct, ok := <-f.steps:
				if !ok {
					if f.fail != nil {
						return nil, f.fail
					}
					return map[string]any{"firmware": "2.1.0"}, nil
				}
				if err := p.Progress(ctx, pct, fmt.Sprintf("flashed %.0f%%", pct)); err != nil {
					return nil, err
				}
			case <-ctx.Done():
				f.ctxErr <- context.Cause(ctx)
				return nil, ctx.Err()
			}
		}
	})
	return p
}

// actionBus starts a bus whose broker publishes every progress report as
// an event (an interval of 1ns) unless cfg says otherwise.
func actionBus(t *testing.T, cfg func(*broker.Config)) *plugintest.Bus {
	return plugintest.Start(t, plugintest.WithBrokerConfig(func(c *broker.Config) {
		c.ActionProgressInterval = time.Nanosecond
		if cfg != nil {
			cfg(c)
		}
	}))
}

func getAction(t *testing.T, bus *plugintest.Bus, id string) schemas.ActionRecord {
	t.Helper()
	var rec schemas.ActionRecord
	bus.MustCall(t, schemas.APIActionsGet, schemas.ActionRef{ID: id}, &rec)
	return rec
}

func waitAction(t *testing.T, bus *plugintest.Bus, id string, cond func(schemas.ActionRecord) bool) schemas.ActionRecord {
	t.Helper()
	var rec schemas.ActionRecord
	bus.WaitFor(t, func() bool {
		rec = getAction(t, bus, id)
		return cond(rec)
	})
	return rec
}

func startFlash(t *testing.T, bus *plugintest.Bus) schemas.MachineActionResponse {
	t.Helper()
	var resp schemas.MachineActionResponse
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "flash", NoWait: true}, &resp)
	if resp.ActionID == "" || resp.Status != schemas.ActionRunning {
		t.Fatalf("no_wait answer %+v, want an action id and status running", resp)
	}
	return resp
}

// settledEvents returns the action's machine events once its
// action_completed event is among them: a record is final once committed,
// and its events follow from the outbox (docs/reliability.md).
func settledEvents(t *testing.T, bus *plugintest.Bus, id string) []*event.Event {
	t.Helper()
	var evs []*event.Event
	bus.WaitFor(t, func() bool {
		evs = machineEvents(t, bus, id)
		return slices.ContainsFunc(evs, func(e *event.Event) bool { return e.Type() == schemas.TypeMachineActionCompleted })
	})
	return evs
}

// machineEvents returns the events of the machine stream about action id,
// in stream order.
func machineEvents(t *testing.T, bus *plugintest.Bus, id string) []*event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := bus.JetStream().OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.Prefix() + ".evt.machine.>"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*event.Event
	for range info.NumPending {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := wire.DecodeEvent(ctx, &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			ActionID string `json:"action_id"`
		}
		if json.Unmarshal(ev.Data(), &d) == nil && d.ActionID == id {
			out = append(out, ev)
		}
	}
	return out
}

// TestLongActionProgress runs an action the plugin accepts at once and
// reports progress on: the record follows every report in order, the
// events are action_requested, one action_progress per report (the
// interval is 1ns here) and action_completed with the result, and the
// record ends succeeded.
func TestLongActionProgress(t *testing.T) {
	bus := actionBus(t, nil)
	f := newFlasher()
	bus.StartPlugin(t, f.plugin(t, bus, time.Minute))
	resp := startFlash(t, bus)
	rec := getAction(t, bus, resp.ActionID)
	if rec.Plugin != "flasher" || rec.Machine != "m1" || rec.Timeout.D() != time.Minute || rec.Deadline.Sub(rec.CreatedAt) != time.Minute {
		t.Fatalf("record %+v", rec)
	}
	pcts := []float64{10, 25.5, 60, 99}
	for i, pct := range pcts {
		f.steps <- pct
		rec = waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return r.Progress != nil && r.Progress.Seq == uint64(i+1) })
		if rec.Progress.Percent != pct || rec.Progress.Message != fmt.Sprintf("flashed %.0f%%", pct) || rec.Status != schemas.ActionRunning {
			t.Fatalf("after report %d: %+v (progress %+v)", i+1, rec, rec.Progress)
		}
	}
	close(f.steps)
	rec = waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return schemas.ActionFinal(r.Status) })
	if rec.Status != schemas.ActionSucceeded || string(rec.Result) != `{"firmware":"2.1.0"}` || rec.FinishedAt == nil || rec.Error != nil {
		t.Fatalf("final record %+v", rec)
	}

	evs := settledEvents(t, bus, resp.ActionID)
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Type())
	}
	want := []string{schemas.TypeMachineActionRequested}
	for range pcts {
		want = append(want, schemas.TypeMachineActionProgress)
	}
	want = append(want, schemas.TypeMachineActionCompleted)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i, pct := range pcts {
		var d schemas.MachineActionProgressData
		if err := evs[i+1].DataAs(&d); err != nil {
			t.Fatal(err)
		}
		if d.Percent != pct || d.Seq != uint64(i+1) || d.Machine != "m1" || d.Plugin != "flasher" || evs[i+1].Subject() != "machine/m1" {
			t.Errorf("progress event %d: %+v (subject %s)", i, d, evs[i+1].Subject())
		}
	}
	var done schemas.MachineActionCompletedData
	if err := evs[len(evs)-1].DataAs(&done); err != nil {
		t.Fatal(err)
	}
	if done.Status != schemas.ActionSucceeded || string(done.Result) != `{"firmware":"2.1.0"}` {
		t.Errorf("completed event %+v", done)
	}
}

// TestLongActionWaits: without no_wait, machines.action answers with the
// result of an accepted action when it ends, and with the plugin's error
// (code kept) when it fails.
func TestLongActionWaits(t *testing.T) {
	bus := actionBus(t, nil)
	f := newFlasher()
	bus.StartPlugin(t, f.plugin(t, bus, time.Minute))
	type answer struct {
		resp schemas.MachineActionResponse
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		var a answer
		a.err = bus.Call(schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "flash"}, &a.resp)
		got <- a
	}()
	<-f.started
	f.steps <- 50
	close(f.steps)
	a := <-got
	if a.err != nil || a.resp.Status != schemas.ActionSucceeded || string(a.resp.Result) != `{"firmware":"2.1.0"}` {
		t.Fatalf("answer %+v, %v", a.resp, a.err)
	}

	g := newFlasher()
	g.fail = &schemas.Error{Code: schemas.CodeConflict, Message: "bank 2 is locked"}
	bus2 := actionBus(t, nil)
	bus2.StartPlugin(t, g.plugin(t, bus2, time.Minute))
	go func() {
		var a answer
		a.err = bus2.Call(schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "flash"}, &a.resp)
		got <- a
	}()
	<-g.started
	close(g.steps)
	a = <-got
	var e *schemas.Error
	if !errors.As(a.err, &e) || e.Code != schemas.CodeConflict || e.Plugin != "flasher" || e.Message != "bank 2 is locked" {
		t.Fatalf("failed action answered %+v, %v", a.resp, a.err)
	}
}

func wantCode(t *testing.T, err error, code string) *schemas.Error {
	t.Helper()
	var e *schemas.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("want error code %s, got %v", code, err)
	}
	if e.Message == "" {
		t.Fatalf("error %s has no message", code)
	}
	return e
}

func eventTypes(evs []*event.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type())
	}
	return out
}

// TestLongActionCancel cancels a running action (identities on, so the
// plugin's own permissions carry its reports and its answer to the cancel
// notice): the handler's context is cancelled with the operator's reason
// as its cause, the action ends cancelled, and what the handler returns
// afterwards changes nothing. Cancelling it again, or an unknown action,
// is refused with a code and details.
func TestLongActionCancel(t *testing.T) {
	bus := plugintest.Start(t, plugintest.WithAuth())
	f := newFlasher()
	bus.StartPlugin(t, f.plugin(t, bus, time.Hour))
	resp := startFlash(t, bus)
	f.steps <- 30
	waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return r.Progress != nil })

	var cr schemas.ActionCancelResponse
	bus.MustCall(t, schemas.APIActionsCancel, schemas.ActionCancelRequest{ID: resp.ActionID, Reason: "wrong machine"}, &cr)
	if !cr.Notified || cr.Action.Status != schemas.ActionCancelled || cr.Action.Error == nil || cr.Action.Error.Code != schemas.CodeCancelled {
		t.Fatalf("cancel answered %+v", cr)
	}
	var cause error
	select {
	case cause = <-f.ctxErr:
	case <-time.After(plugintest.WaitTimeout):
		t.Fatal("the handler's context was not cancelled")
	}
	var ce *schemas.Error
	if !errors.Is(cause, schemas.ErrCancelled) || !errors.As(cause, &ce) || ce.Message != "cancelled by an operator: wrong machine" {
		t.Fatalf("handler's cause %v, want cancelled by an operator: wrong machine", cause)
	}
	// The handler returned ctx.Err(); the record stays cancelled.
	rec := getAction(t, bus, resp.ActionID)
	if rec.Status != schemas.ActionCancelled || rec.Error.Message != "cancelled by an operator: wrong machine" || rec.Progress.Percent != 30 {
		t.Fatalf("record %+v", rec)
	}
	var d schemas.MachineActionCompletedData
	bus.WaitFor(t, func() bool { return len(machineEvents(t, bus, resp.ActionID)) == 3 })
	evs := machineEvents(t, bus, resp.ActionID)
	if err := evs[2].DataAs(&d); err != nil || d.Status != schemas.ActionCancelled || d.Error.Code != schemas.CodeCancelled {
		t.Fatalf("events %v, last %+v (%v)", eventTypes(evs), d, err)
	}

	e := wantCode(t, bus.Call(schemas.APIActionsCancel, schemas.ActionCancelRequest{ID: resp.ActionID}, nil), schemas.CodeConflict)
	if e.Details[schemas.DetailStatus] != schemas.ActionCancelled || e.Details[schemas.DetailKind] != "action" {
		t.Errorf("second cancel: %+v", e)
	}
	for _, ep := range []string{schemas.APIActionsCancel, schemas.APIActionsGet} {
		var req any = schemas.ActionRef{ID: "no-such-action"}
		if ep == schemas.APIActionsCancel {
			req = schemas.ActionCancelRequest{ID: "no-such-action"}
		}
		e = wantCode(t, bus.Call(ep, req, nil), schemas.CodeNotFound)
		if e.Details[schemas.DetailKind] != "action" || e.Field != "id" {
			t.Errorf("%s of an unknown action: %+v", ep, e)
		}
	}
}

// TestLongActionTimeout: an action that runs past the manifest's timeout
// is recorded failed with code timeout, and its handler's context ends
// with a timeout cause.
func TestLongActionTimeout(t *testing.T) {
	bus := actionBus(t, nil)
	f := newFlasher()
	bus.StartPlugin(t, f.plugin(t, bus, 300*time.Millisecond))
	err := bus.Call(schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "flash"}, nil)
	e := wantCode(t, err, schemas.CodeTimeout)
	if e.Plugin != "flasher" {
		t.Errorf("timeout error %+v does not name the plugin", e)
	}
	var cause error
	select {
	case cause = <-f.ctxErr:
	case <-time.After(plugintest.WaitTimeout):
		t.Fatal("the handler's context did not end")
	}
	if !errors.Is(cause, schemas.ErrTimeout) {
		t.Fatalf("handler's cause %v, want a timeout", cause)
	}
	var list schemas.ActionListResponse
	bus.MustCall(t, schemas.APIActionsList, schemas.ActionListRequest{Machine: "m1"}, &list)
	if len(list.Actions) != 1 || list.Actions[0].Status != schemas.ActionFailed || list.Actions[0].Error.Code != schemas.CodeTimeout {
		t.Fatalf("actions %+v", list.Actions)
	}
}

// TestLongActionSurvivesBrokerRestart stops the broker while the plugin
// works on an action; the plugin finishes meanwhile and keeps reporting
// its completion until the next broker records it, once.
func TestLongActionSurvivesBrokerRestart(t *testing.T) {
	bus := actionBus(t, nil)
	f := newFlasher()
	bus.StartPlugin(t, f.plugin(t, bus, time.Minute))
	resp := startFlash(t, bus)
	f.steps <- 40
	waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return r.Progress != nil })

	bus.StopBroker(t)
	f.steps <- 80 // reported while no broker runs: retried, then dropped at the end
	close(f.steps)
	<-f.returned // done while no broker runs: its completion report waits for one
	bus.StartBroker(t)
	rec := waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return schemas.ActionFinal(r.Status) })
	if rec.Status != schemas.ActionSucceeded || string(rec.Result) != `{"firmware":"2.1.0"}` {
		t.Fatalf("record after the restart %+v", rec)
	}
	completed := 0
	for _, ev := range settledEvents(t, bus, resp.ActionID) {
		if ev.Type() == schemas.TypeMachineActionCompleted {
			completed++
		}
	}
	if completed != 1 {
		t.Fatalf("%d action_completed events, want 1", completed)
	}
	if n := len(f.calls); n != 1 {
		t.Fatalf("the handler ran %d times, want once", n)
	}
}

// TestActionProgressThrottled: with a long progress interval only the
// first report and the last one before the end become events; the record
// has every report.
func TestActionProgressThrottled(t *testing.T) {
	bus := actionBus(t, func(c *broker.Config) { c.ActionProgressInterval = time.Hour })
	f := newFlasher()
	bus.StartPlugin(t, f.plugin(t, bus, time.Minute))
	resp := startFlash(t, bus)
	for i, pct := range []float64{10, 20, 30} {
		f.steps <- pct
		waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return r.Progress != nil && r.Progress.Seq == uint64(i+1) })
	}
	close(f.steps)
	waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return schemas.ActionFinal(r.Status) })
	evs := settledEvents(t, bus, resp.ActionID)
	want := []string{schemas.TypeMachineActionRequested, schemas.TypeMachineActionProgress, schemas.TypeMachineActionProgress, schemas.TypeMachineActionCompleted}
	if fmt.Sprint(eventTypes(evs)) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", eventTypes(evs), want)
	}
	for i, pct := range map[int]float64{1: 10, 2: 30} {
		var d schemas.MachineActionProgressData
		if err := evs[i].DataAs(&d); err != nil || d.Percent != pct {
			t.Errorf("progress event %d: %+v, want %v%%", i, d, pct)
		}
	}
}

// TestActionReportsBadInput: reports on an unknown action, on another
// plugin's action and out of range are refused with codes; Progress
// outside an action handler says so.
func TestActionReportsBadInput(t *testing.T) {
	bus := actionBus(t, nil)
	f := newFlasher()
	p := f.plugin(t, bus, time.Minute)
	bus.StartPlugin(t, p)
	resp := startFlash(t, bus)

	wantCode(t, bus.Call(schemas.APIActionsComplete+".flasher", schemas.ActionCompleteRequest{ActionID: "nope"}, nil), schemas.CodeNotFound)
	e := wantCode(t, bus.Call(schemas.APIActionsComplete+".other", schemas.ActionCompleteRequest{ActionID: resp.ActionID}, nil), schemas.CodeForbidden)
	if e.Field != "action_id" {
		t.Errorf("forbidden report: %+v", e)
	}
	wantCode(t, bus.Call(schemas.APIActionsProgress+".other", schemas.ActionProgressRequest{ActionID: resp.ActionID, Seq: 1, Percent: 5}, nil), schemas.CodeForbidden)
	e = wantCode(t, bus.Call(schemas.APIActionsProgress+".flasher", schemas.ActionProgressRequest{ActionID: resp.ActionID, Seq: 1, Percent: 150}, nil), schemas.CodeInvalidField)
	if e.Field != "percent" {
		t.Errorf("out of range: %+v", e)
	}
	wantCode(t, bus.Call(schemas.APIActionsList, schemas.ActionListRequest{Status: "sleeping"}, nil), schemas.CodeInvalidField)

	if err := p.Progress(context.Background(), 10, "x"); !errors.Is(err, sdk.ErrNotInAction) {
		t.Errorf("Progress outside a handler = %v", err)
	}
	close(f.steps)
	waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return r.Status == schemas.ActionSucceeded })
	// A late repeat of the completion changes nothing.
	var rr schemas.ActionReportResponse
	bus.MustCall(t, schemas.APIActionsComplete+".flasher", schemas.ActionCompleteRequest{ActionID: resp.ActionID,
		Error: &schemas.Error{Code: schemas.CodePluginError, Message: "late"}}, &rr)
	if rr.Recorded || rr.Status != schemas.ActionSucceeded {
		t.Fatalf("late completion answered %+v", rr)
	}
}

// TestLastProgressIsRecorded: a handler that reports its last progress and
// returns at once still gets that report recorded and published before
// action_completed, whether it was accepted or answered inline.
func TestLastProgressIsRecorded(t *testing.T) {
	for _, c := range []struct {
		name   string
		accept time.Duration
	}{{"accepted", 0}, {"answered inline", time.Minute}} {
		t.Run(c.name, func(t *testing.T) {
			bus := actionBus(t, func(cfg *broker.Config) { cfg.ActionProgressInterval = time.Hour })
			p, err := sdk.New(schemas.Manifest{Name: "quick", Version: "1.0.0", Actions: []schemas.ActionSpec{{Command: "burst", Model: "machines"}}},
				sdk.WithPrefix(bus.Prefix()), sdk.WithActionAcceptAfter(c.accept))
			if err != nil {
				t.Fatal(err)
			}
			seen := make(chan struct{})
			p.HandleAction("burst", func(ctx context.Context, _ *sdk.Action) (any, error) {
				for i := 1; i <= 4; i++ {
					if err := p.Progress(ctx, float64(i*20), fmt.Sprintf("step %d", i)); err != nil {
						return nil, err
					}
				}
				// Once a report is recorded, the next one waits for the
				// spacing between reports: the handler returns first.
				<-seen
				if err := p.Progress(ctx, 100, "step 5"); err != nil {
					return nil, err
				}
				return "ok", nil
			})
			bus.StartPlugin(t, p)
			var resp schemas.MachineActionResponse
			bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m1", Command: "burst", NoWait: true}, &resp)
			waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return r.Progress != nil })
			close(seen)
			waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return schemas.ActionFinal(r.Status) })
			rec := getAction(t, bus, resp.ActionID)
			if rec.Status != schemas.ActionSucceeded || rec.Progress == nil || rec.Progress.Percent != 100 || rec.Progress.Message != "step 5" {
				t.Fatalf("record %+v, progress %+v", rec, rec.Progress)
			}
			evs := settledEvents(t, bus, resp.ActionID)
			n := len(evs)
			var d schemas.MachineActionProgressData
			if n < 3 || evs[n-1].Type() != schemas.TypeMachineActionCompleted || evs[n-2].Type() != schemas.TypeMachineActionProgress ||
				evs[n-2].DataAs(&d) != nil || d.Percent != 100 {
				t.Fatalf("events %v (last progress %+v)", eventTypes(evs), d)
			}
		})
	}
}

// TestStoppingInstanceFailsItsActions: an instance that stops while an
// action runs cancels its handler and reports the action failed with
// code unavailable, so the caller need not wait for the timeout.
func TestStoppingInstanceFailsItsActions(t *testing.T) {
	bus := actionBus(t, nil)
	f := newFlasher()
	in := bus.StartPlugin(t, f.plugin(t, bus, time.Hour))
	resp := startFlash(t, bus)
	<-f.started
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	if cause := <-f.ctxErr; !errors.Is(cause, schemas.ErrUnavailable) {
		t.Fatalf("handler's cause %v", cause)
	}
	rec := waitAction(t, bus, resp.ActionID, func(r schemas.ActionRecord) bool { return schemas.ActionFinal(r.Status) })
	if rec.Status != schemas.ActionFailed || rec.Error == nil || rec.Error.Code != schemas.CodeUnavailable || rec.Error.Plugin != "flasher" {
		t.Fatalf("record %+v (error %+v)", rec, rec.Error)
	}
}
