package schemas

import (
	"encoding/json"
	"time"
)

// Long-running actions (docs/protocol.md#actions). An action is a record
// in BucketActions from the moment the broker routes it to its end: the
// plugin may answer the action request at once with its result (a short
// action, as before) or accept it (ActionResponse.Accepted) and report
// progress and, later, its completion on the scoped endpoints
// APIActionsProgress and APIActionsComplete, which any broker replica
// serves; the record survives a broker restart, and completing an action
// twice records it once. The broker fails an action that runs past its
// timeout (ActionSpec.Timeout) and tells the plugin, as it does when an
// operator cancels one (APIActionsCancel), on VerbCancel.
const (
	APIActionsGet    = "actions.get"    // ActionRef → ActionRecord (admin)
	APIActionsList   = "actions.list"   // ActionListRequest → ActionListResponse (admin)
	APIActionsCancel = "actions.cancel" // ActionCancelRequest → ActionCancelResponse (admin)
	// APIActionsProgress and APIActionsComplete are scoped: the subject
	// ends with the reporting plugin's name (wire.PluginAPISubject), and
	// only the plugin the action was routed to may report on it.
	APIActionsProgress = "actions.progress" // ActionProgressRequest → ActionReportResponse
	APIActionsComplete = "actions.complete" // ActionCompleteRequest → ActionReportResponse

	// VerbCancel is the plugin control subject
	// ("<prefix>.plugin.<name>.cancel") on which the broker tells every
	// instance of a plugin (a plain subscription, no queue group) that an
	// action ended before the plugin finished it (cancelled, timed out):
	// ActionCancelNotice → ActionCancelNoticeResponse, answered only by
	// the instance running the action.
	VerbCancel = "cancel"

	// BucketActions holds the action records: action id → ActionRecord;
	// a finished one leaves after the broker's action retention.
	BucketActions = "plugbus_actions"

	// TypeMachineActionProgress is the event of an action's progress
	// report (at most one per action per progress interval, plus the last
	// report before the action ends).
	TypeMachineActionProgress = "io.plugbus.machine.v1.action_progress"

	APIActionRecord            = "api/v1/action_record.json"              // ActionRecord
	APIActionRef               = "api/v1/action_ref.json"                 // ActionRef
	APIActionListRequest       = "api/v1/action_list_request.json"        // ActionListRequest
	APIActionListResponse      = "api/v1/action_list_response.json"       // ActionListResponse
	APIActionCancelRequest     = "api/v1/action_cancel_request.json"      // ActionCancelRequest
	APIActionCancelResponse    = "api/v1/action_cancel_response.json"     // ActionCancelResponse
	APIActionProgressRequest   = "api/v1/action_progress_request.json"    // ActionProgressRequest
	APIActionCompleteRequest   = "api/v1/action_complete_request.json"    // ActionCompleteRequest
	APIActionReportResponse    = "api/v1/action_report_response.json"     // ActionReportResponse
	APIActionCancelNotice      = "api/v1/action_cancel_notice.json"       // ActionCancelNotice
	APIActionCancelNoticeReply = "api/v1/action_cancel_notice_reply.json" // ActionCancelNoticeResponse
	EventMachineActionProgress = "events/machine/v1/action_progress.json" // MachineActionProgressData
)

// MaxActionTimeout is the longest timeout an action may declare
// (ActionSpec.Timeout).
const MaxActionTimeout = 7 * 24 * time.Hour

// Action statuses (ActionRecord.Status). ActionSucceeded and ActionFailed
// are in events.go.
const (
	// ActionPending: the broker routed the action and is calling the
	// plugin; the plugin has not taken it yet.
	ActionPending = "pending"
	// ActionRunning: the plugin accepted the action (or reported
	// progress) and works on it.
	ActionRunning = "running"
	// ActionCancelled: an operator cancelled it before it ended.
	ActionCancelled = "cancelled"
)

// ActionFinal reports whether an action status is final: succeeded,
// failed or cancelled. A final record never changes again.
func ActionFinal(status string) bool {
	switch status {
	case ActionSucceeded, ActionFailed, ActionCancelled:
		return true
	}
	return false
}

// ActionRecord is an action as BucketActions holds it and actions.get
// returns it.
type ActionRecord struct {
	ID string `json:"id"`
	// Model and Object are what the action applies to ("machines", the
	// machine name); Machine repeats Object for machine actions.
	Model   string         `json:"model"`
	Object  string         `json:"object"`
	Machine string         `json:"machine,omitempty"`
	Command string         `json:"command"`
	Plugin  string         `json:"plugin"`
	Params  map[string]any `json:"params,omitempty"`
	// Status is one of pending, running, succeeded, failed, cancelled.
	Status string `json:"status"`
	// Progress is the plugin's last progress report, if any.
	Progress *ActionProgress `json:"progress,omitempty"`
	// Result is the plugin's result (succeeded); Error why it failed or
	// who cancelled it (failed, cancelled: code timeout, cancelled, or the
	// plugin's own).
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
	// Timeout is the action's timeout (the manifest's, or the broker's
	// default); Deadline is when it runs out.
	Timeout  Duration  `json:"timeout"`
	Deadline time.Time `json:"deadline"`
	// Instance is the plugin instance that accepted it.
	Instance   string     `json:"instance,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// DurationMs is how long it took, from created to finished.
	DurationMs float64 `json:"duration_ms,omitempty"`
}

// ActionProgress is one progress report of an action.
type ActionProgress struct {
	// Percent is how much is done, 0 to 100.
	Percent float64 `json:"percent"`
	Message string  `json:"message,omitempty"`
	// Seq numbers the plugin's reports on the action, from 1: a report
	// not newer than the recorded one changes nothing (a repeat, or one
	// that arrived late).
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
}

// ActionRef names one action.
type ActionRef struct {
	ID string `json:"id"`
}

// ActionListRequest lists actions, newest first.
type ActionListRequest struct {
	// Status keeps only actions with that status; "active" keeps the
	// pending and running ones.
	Status string `json:"status,omitempty"`
	// Machine keeps only the actions on that machine.
	Machine string `json:"machine,omitempty"`
	// Limit bounds the list (default 100).
	Limit int `json:"limit,omitempty"`
}

// ActionStatusActive is the ActionListRequest.Status that keeps the
// actions that have not ended.
const ActionStatusActive = "active"

// ActionListResponse answers ActionListRequest.
type ActionListResponse struct {
	Actions []ActionRecord `json:"actions"`
}

// ActionCancelRequest cancels an action that has not ended.
type ActionCancelRequest struct {
	ID string `json:"id"`
	// Reason is kept in the record's error and handed to the plugin.
	Reason string `json:"reason,omitempty"`
}

// ActionCancelResponse answers ActionCancelRequest with the cancelled
// record. Notified is true when the instance running the action answered
// the cancel notice (its handler's context is cancelled); false when none
// did (it stopped, or runs an SDK without cancel support): the action is
// cancelled all the same, and what the plugin reports later is ignored.
type ActionCancelResponse struct {
	Action   ActionRecord `json:"action"`
	Notified bool         `json:"notified"`
}

// ActionProgressRequest is a plugin's progress report on an action.
type ActionProgressRequest struct {
	ActionID string  `json:"action_id"`
	Seq      uint64  `json:"seq"`
	Percent  float64 `json:"percent"`
	Message  string  `json:"message,omitempty"`
	// Instance is the reporting plugin instance.
	Instance string `json:"instance,omitempty"`
}

// ActionCompleteRequest is a plugin's report that an action it accepted
// ended: with its result, or its error.
type ActionCompleteRequest struct {
	ActionID string          `json:"action_id"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *Error          `json:"error,omitempty"`
	Instance string          `json:"instance,omitempty"`
}

// ActionReportResponse answers a progress or completion report with the
// action's status after it. A final status on a progress report means the
// action ended without the plugin (cancelled, timed out): the plugin stops
// working on it. Recorded is false when the report changed nothing (a
// repeat, or the action had ended already).
type ActionReportResponse struct {
	Status   string `json:"status"`
	Recorded bool   `json:"recorded"`
	// Error is the record's error once the action failed or was
	// cancelled (why it ended, on a progress report).
	Error *Error `json:"error,omitempty"`
}

// ActionCancelNotice tells a plugin's instances that an action ended
// before the plugin finished it. Error says why (code cancelled or
// timeout).
type ActionCancelNotice struct {
	ActionID string `json:"action_id"`
	Error    *Error `json:"error"`
}

// ActionCancelNoticeResponse is the answer of the instance running the
// action.
type ActionCancelNoticeResponse struct {
	Instance string `json:"instance"`
}

// MachineActionProgressData is the data of io.plugbus.machine.v1.action_progress.
type MachineActionProgressData struct {
	ActionID string    `json:"action_id"`
	Machine  string    `json:"machine"`
	Command  string    `json:"command"`
	Plugin   string    `json:"plugin"`
	Percent  float64   `json:"percent"`
	Message  string    `json:"message,omitempty"`
	Seq      uint64    `json:"seq"`
	At       time.Time `json:"at"`
}

// Keys of Error.Details of the actions' errors.
const (
	// DetailActionID names the action an error is about (a timeout while
	// waiting for one: it goes on).
	DetailActionID = "action_id"
	// DetailStatus is the action's status (a conflict: it ended already).
	DetailStatus = "status"
)
