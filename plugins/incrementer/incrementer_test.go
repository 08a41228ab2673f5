package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// memMachines is an in-memory Machines.
type memMachines struct {
	m      map[string]map[string]any
	getErr error
	sets   int
}

func (mm *memMachines) Params(_ context.Context, machine string) (map[string]any, error) {
	if mm.getErr != nil {
		return nil, mm.getErr
	}
	return mm.m[machine], nil
}

func (mm *memMachines) SetParam(_ context.Context, machine, param string, value any) error {
	if mm.m[machine] == nil {
		mm.m[machine] = map[string]any{}
	}
	mm.m[machine][param] = value
	mm.sets++
	return nil
}

func TestManifestIsValid(t *testing.T) {
	m := Manifest()
	if err := m.Validate(); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if _, err := sdk.New(m); err != nil {
		t.Fatal(err)
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name     string
		command  string
		object   string
		params   map[string]any
		machine  map[string]any // params on machine m1 before the call
		getErr   error
		want     Result
		wantCode string
	}{
		{name: "first increment", command: "increment", object: "m1",
			want: Result{DefaultParameter, 1}},
		{name: "adds to the current value", command: "increment", object: "m1", machine: map[string]any{DefaultParameter: 41.0},
			want: Result{DefaultParameter, 42}},
		{name: "step and parameter", command: "increment", object: "m1",
			params:  map[string]any{ParamStep: 5.0, ParamParameter: "hits"},
			machine: map[string]any{"hits": 10.0}, want: Result{"hits", 15}},
		{name: "step as a string", command: "increment", object: "m1", params: map[string]any{ParamStep: "3"}, want: Result{DefaultParameter, 3}},
		{name: "negative step", command: "increment", object: "m1", params: map[string]any{ParamStep: -2.0}, want: Result{DefaultParameter, -2}},
		{name: "bad step", command: "increment", object: "m1", params: map[string]any{ParamStep: "lots"}, wantCode: schemas.CodeInvalidField},
		{name: "empty parameter", command: "increment", object: "m1", params: map[string]any{ParamParameter: ""}, wantCode: schemas.CodeInvalidField},
		{name: "counter is not a number", command: "increment", object: "m1", machine: map[string]any{DefaultParameter: "x"}, wantCode: schemas.CodeConflict},
		{name: "no machine", command: "increment", wantCode: schemas.CodeInvalidField},
		{name: "broker down", command: "increment", object: "m1", getErr: &schemas.Error{Code: schemas.CodeTimeout, Message: "slow"}, wantCode: schemas.CodeTimeout},
		{name: "reset", command: "reset_count", object: "m1", params: map[string]any{ParamTouched: true},
			machine: map[string]any{DefaultParameter: 7.0}, want: Result{DefaultParameter, 0}},
		{name: "reset another parameter", command: "reset_count", object: "m1", params: map[string]any{ParamTouched: "yes", ParamParameter: "hits"},
			want: Result{"hits", 0}},
		{name: "reset without touched", command: "reset_count", object: "m1", wantCode: schemas.CodeMissingParam},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm := &memMachines{m: map[string]map[string]any{}, getErr: tt.getErr}
			if tt.machine != nil {
				mm.m["m1"] = tt.machine
			}
			inc := &Incrementer{Machines: mm}
			h := map[string]sdk.ActionHandler{"increment": inc.Increment, "reset_count": inc.ResetCount}[tt.command]
			res, err := h(context.Background(), &sdk.Action{ActionRequest: schemas.ActionRequest{
				Command: tt.command, Model: "machines", Object: tt.object, Params: tt.params}})
			if tt.wantCode != "" {
				var se *schemas.Error
				if !errors.As(err, &se) || se.Code != tt.wantCode {
					t.Fatalf("error = %v, want code %s", err, tt.wantCode)
				}
				if mm.sets != 0 {
					t.Error("a failed action wrote the machine")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res != tt.want {
				t.Errorf("result = %+v, want %+v", res, tt.want)
			}
			if got := mm.m["m1"][tt.want.Parameter]; got != tt.want.Value {
				t.Errorf("machine param %s = %#v, want %d", tt.want.Parameter, got, tt.want.Value)
			}
		})
	}
}

// TestAgainstTheBus runs the plugin with the real broker: the broker fills
// optional params from the machine and enforces required ones.
func TestAgainstTheBus(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(Manifest(), sdk.WithPrefix(bus.Prefix()))
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(p); err != nil {
		t.Fatal(err)
	}
	bus.StartPlugin(t, p)
	if st := bus.Plugin(t, "incrementer").State; st != schemas.StateActive {
		t.Fatalf("state = %s", st)
	}

	action := func(t *testing.T, machine, command string, params map[string]any) (Result, error) {
		t.Helper()
		var resp schemas.MachineActionResponse
		err := bus.Call(schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: machine, Command: command, Params: params}, &resp)
		var r Result
		if err == nil {
			err = json.Unmarshal(resp.Result, &r)
		}
		return r, err
	}
	steps := []struct {
		name     string
		setParam map[string]any // machine params set before the call
		command  string
		params   map[string]any
		want     Result
		wantCode string
	}{
		{name: "new machine", command: "increment", want: Result{DefaultParameter, 1}},
		{name: "again", command: "increment", want: Result{DefaultParameter, 2}},
		{name: "step from the call", command: "increment", params: map[string]any{ParamStep: 10}, want: Result{DefaultParameter, 12}},
		{name: "step from the machine", setParam: map[string]any{ParamStep: 100}, command: "increment", want: Result{DefaultParameter, 112}},
		{name: "the call wins over the machine", command: "increment", params: map[string]any{ParamStep: 1}, want: Result{DefaultParameter, 113}},
		{name: "reset needs touched", command: "reset_count", wantCode: schemas.CodeMissingParam},
		{name: "touched from the machine", setParam: map[string]any{ParamTouched: true}, command: "reset_count", want: Result{DefaultParameter, 0}},
		{name: "counts from zero after reset", setParam: map[string]any{ParamStep: nil}, command: "increment", want: Result{DefaultParameter, 1}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			for k, v := range s.setParam {
				bus.MustCall(t, schemas.APIMachinesSetParam, schemas.MachineSetParamRequest{Machine: "m1", Param: k, Value: v}, nil)
			}
			got, err := action(t, "m1", s.command, s.params)
			if s.wantCode != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantCode) {
					t.Fatalf("error = %v, want %s", err, s.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != s.want {
				t.Errorf("got %+v, want %+v", got, s.want)
			}
		})
	}
	var m schemas.Machine
	bus.MustCall(t, schemas.APIMachinesGet, schemas.MachineRef{Name: "m1"}, &m)
	if !reflect.DeepEqual(m.Params[DefaultParameter], 1.0) {
		t.Errorf("stored counter = %#v, want 1", m.Params[DefaultParameter])
	}
}

// TestFirmwareUpdate runs the handler with a short duration: it reports
// every block in order and answers the version; a cancelled context
// stops it with the cause; a bad duration is refused.
func TestFirmwareUpdate(t *testing.T) {
	mm := &memMachines{m: map[string]map[string]any{}}
	inc := &Incrementer{Machines: mm}
	var got []float64
	h := inc.FirmwareUpdate(func(_ context.Context, pct float64, _ string) error {
		got = append(got, pct)
		return nil
	})
	act := func(params map[string]any) *sdk.Action {
		return &sdk.Action{ActionRequest: schemas.ActionRequest{Command: "firmware-update", Object: "m1", Params: params}}
	}
	res, err := h(context.Background(), act(map[string]any{ParamDuration: "20ms"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := res.(FirmwareResult); r.Firmware != FirmwareVersion || r.Machine != "m1" {
		t.Fatalf("result %+v", r)
	}
	if len(got) != updateBlocks || got[0] != 5 || got[len(got)-1] != 100 {
		t.Fatalf("progress %v", got)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := &schemas.Error{Code: schemas.CodeCancelled, Message: "cancelled by an operator"}
	cancel(cause)
	if _, err := h(ctx, act(nil)); !errors.Is(err, schemas.ErrCancelled) {
		t.Fatalf("cancelled update: %v", err)
	}
	for _, bad := range []any{"soon", "-1s", "1h", 3600.0} {
		_, err := h(context.Background(), act(map[string]any{ParamDuration: bad}))
		var e *schemas.Error
		if !errors.As(err, &e) || e.Code != schemas.CodeInvalidField || e.Field != "params."+ParamDuration {
			t.Errorf("duration %v: %v", bad, err)
		}
	}
}

// TestFirmwareUpdateOnTheBus: the long action through the real broker:
// accepted, progress recorded, the result at the end.
func TestFirmwareUpdateOnTheBus(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(Manifest(), sdk.WithPrefix(bus.Prefix()), sdk.WithActionAcceptAfter(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(p); err != nil {
		t.Fatal(err)
	}
	bus.StartPlugin(t, p)
	var resp schemas.MachineActionResponse
	bus.MustCall(t, schemas.APIMachinesAction, schemas.MachineActionRequest{Machine: "m7", Command: "firmware-update",
		Params: map[string]any{ParamDuration: "400ms"}, NoWait: true}, &resp)
	var rec schemas.ActionRecord
	bus.WaitFor(t, func() bool {
		bus.MustCall(t, schemas.APIActionsGet, schemas.ActionRef{ID: resp.ActionID}, &rec)
		return schemas.ActionFinal(rec.Status)
	})
	var r FirmwareResult
	if rec.Status != schemas.ActionSucceeded || json.Unmarshal(rec.Result, &r) != nil || r.Firmware != FirmwareVersion {
		t.Fatalf("record %+v", rec)
	}
	if rec.Progress == nil || rec.Progress.Seq == 0 || rec.Timeout.D() != UpdateTimeout {
		t.Fatalf("progress %+v, timeout %s", rec.Progress, rec.Timeout.D())
	}
}
