package schemas_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

func sampleActionRecord() schemas.ActionRecord {
	started, finished := t0.Add(time.Second), t1
	return schemas.ActionRecord{ID: "0b8e1c9a-53f2-5d0e-9c1a-2f4b6d8e0a13", Model: "machines", Object: "rack1-node07.dc2", Machine: "rack1-node07.dc2",
		Command: "firmware-update", Plugin: "incrementer", Params: map[string]any{"duration": "20s"}, Status: schemas.ActionSucceeded,
		Progress: &schemas.ActionProgress{Percent: 100, Message: "flashed bank 2", Seq: 21, At: t1},
		Result:   json.RawMessage(`{"firmware":"2.1.0"}`), Timeout: schemas.Duration(10 * time.Minute), Deadline: t0.Add(10 * time.Minute),
		Instance: "NnkUxHRQ1Z7ab0cd", CreatedAt: t0, StartedAt: &started, UpdatedAt: t1, FinishedAt: &finished, DurationMs: 90000}
}

func actionSamples() []sample {
	running := schemas.ActionRecord{ID: "a-2", Model: "machines", Object: "m1", Machine: "m1", Command: "reimage", Plugin: "provisioner",
		Status: schemas.ActionPending, Timeout: schemas.Duration(30 * time.Second), Deadline: t1, CreatedAt: t0, UpdatedAt: t0}
	cancelled := sampleActionRecord()
	cancelled.Status, cancelled.Result = schemas.ActionCancelled, nil
	cancelled.Error = &schemas.Error{Code: schemas.CodeCancelled, Message: "cancelled by an operator: wrong machine"}
	return []sample{
		{"action record", schemas.APIActionRecord, sampleActionRecord()},
		{"action record pending", schemas.APIActionRecord, running},
		{"action ref", schemas.APIActionRef, schemas.ActionRef{ID: "a-2"}},
		{"action list request", schemas.APIActionListRequest, schemas.ActionListRequest{Status: schemas.ActionStatusActive, Machine: "m1", Limit: 10}},
		{"action list request empty", schemas.APIActionListRequest, schemas.ActionListRequest{}},
		{"action list response", schemas.APIActionListResponse, schemas.ActionListResponse{Actions: []schemas.ActionRecord{sampleActionRecord(), running}}},
		{"action list response nil", schemas.APIActionListResponse, schemas.ActionListResponse{}},
		{"action cancel request", schemas.APIActionCancelRequest, schemas.ActionCancelRequest{ID: "a-2", Reason: "wrong machine"}},
		{"action cancel response", schemas.APIActionCancelResponse, schemas.ActionCancelResponse{Action: cancelled, Notified: true}},
		{"action progress request", schemas.APIActionProgressRequest, schemas.ActionProgressRequest{ActionID: "a-2", Seq: 3, Percent: 42.5,
			Message: "flashing bank 1", Instance: "NnkUxHRQ1Z7ab0cd"}},
		{"action complete request", schemas.APIActionCompleteRequest, schemas.ActionCompleteRequest{ActionID: "a-2", Result: json.RawMessage(`"done"`)}},
		{"action complete request failed", schemas.APIActionCompleteRequest, schemas.ActionCompleteRequest{ActionID: "a-2", Error: sampleError()}},
		{"action report response", schemas.APIActionReportResponse, schemas.ActionReportResponse{Status: schemas.ActionRunning, Recorded: true}},
		{"action cancel notice", schemas.APIActionCancelNotice, schemas.ActionCancelNotice{ActionID: "a-2",
			Error: &schemas.Error{Code: schemas.CodeTimeout, Message: "the action ran past its timeout of 30s"}}},
		{"action cancel notice reply", schemas.APIActionCancelNoticeReply, schemas.ActionCancelNoticeResponse{Instance: "NnkUxHRQ1Z7ab0cd"}},
		{"machine action progress", schemas.EventMachineActionProgress, schemas.MachineActionProgressData{ActionID: "a-2", Machine: "m1",
			Command: "reimage", Plugin: "provisioner", Percent: 42.5, Message: "flashing bank 1", Seq: 3, At: t0}},
		{"machine action cancelled", schemas.EventMachineActionCompleted, schemas.MachineActionCompletedData{ActionID: "a-2", Machine: "m1",
			Command: "reimage", Plugin: "provisioner", Status: schemas.ActionCancelled, Error: cancelled.Error, DurationMs: 1500}},
		{"long action request", schemas.APIActionRequest, schemas.ActionRequest{ActionID: "a-2", Command: "reimage", Model: "machines", Object: "m1",
			Async: true, Timeout: schemas.Duration(time.Hour), Deadline: &t1}},
		{"action accepted", schemas.APIActionResponse, schemas.ActionResponse{Accepted: true, Instance: "NnkUxHRQ1Z7ab0cd"}},
		{"machine action no wait", schemas.APIMachineActionRequest, schemas.MachineActionRequest{Machine: "m1", Command: "reimage", NoWait: true}},
		{"machine action running", schemas.APIMachineActionResponse, schemas.MachineActionResponse{ActionID: "a-2", Machine: "m1", Command: "reimage",
			Plugin: "provisioner", Status: schemas.ActionRunning}},
	}
}

func TestActionFinal(t *testing.T) {
	for status, want := range map[string]bool{schemas.ActionPending: false, schemas.ActionRunning: false,
		schemas.ActionSucceeded: true, schemas.ActionFailed: true, schemas.ActionCancelled: true, "": false} {
		if got := schemas.ActionFinal(status); got != want {
			t.Errorf("ActionFinal(%q) = %v, want %v", status, got, want)
		}
	}
}

func TestManifestActionTimeout(t *testing.T) {
	m := schemas.Manifest{Name: "slow", Version: "1.0.0", Actions: []schemas.ActionSpec{
		{Command: "ok", Model: "machines", Timeout: schemas.Duration(time.Hour)},
		{Command: "too-long", Model: "machines", Timeout: schemas.Duration(schemas.MaxActionTimeout + time.Second)},
	}}
	err := m.Validate()
	var e *schemas.Error
	if !errors.As(err, &e) || e.Code != schemas.CodeInvalidField || e.Field != "manifest.actions[1].timeout" {
		t.Fatalf("Validate = %v, want invalid_field on manifest.actions[1].timeout", err)
	}
	m.Actions = m.Actions[:1]
	if err := m.Validate(); err != nil {
		t.Fatalf("a 1h timeout: %v", err)
	}
}
