package schemas

import (
	"strconv"
	"time"
)

// Dead letters for operators: list them, show one, replay them to the
// consumer that gave up on them, purge them (admin only: identity.PluginAPI
// has none of these). docs/busctl.md (dlq) and docs/protocol.md describe
// the replay.
const (
	APIDLQList   = "dlq.list"   // DLQListRequest → DLQListResponse
	APIDLQGet    = "dlq.get"    // DLQRef → DeadLetter (with Message)
	APIDLQReplay = "dlq.replay" // DLQReplayRequest → DLQReplayResponse
	APIDLQPurge  = "dlq.purge"  // DLQPurgeRequest → DLQPurgeResponse

	APIDLQListRequest    = "api/v1/dlq_list_request.json"    // DLQListRequest
	APIDLQListResponse   = "api/v1/dlq_list_response.json"   // DLQListResponse
	APIDLQRef            = "api/v1/dlq_ref.json"             // DLQRef
	APIDeadLetter        = "api/v1/dead_letter.json"         // DeadLetter
	APIDLQReplayRecord   = "api/v1/dlq_replay.json"          // DLQReplay
	APIDLQReplayRequest  = "api/v1/dlq_replay_request.json"  // DLQReplayRequest
	APIDLQReplayResponse = "api/v1/dlq_replay_response.json" // DLQReplayResponse
	APIDLQPurgeRequest   = "api/v1/dlq_purge_request.json"   // DLQPurgeRequest
	APIDLQPurgeResponse  = "api/v1/dlq_purge_response.json"  // DLQPurgeResponse

	// BucketDLQReplays records every replay of a dead letter, so each is
	// replayed once: key "<consumer>.<stream seq of the event>"
	// (DLQReplayKey) → DLQReplay, kept as long as dead letters are.
	BucketDLQReplays = "plugbus_dlq_replays"

	// MaxDLQPage bounds dlq.list's limit and dlq.replay's seqs.
	MaxDLQPage = 500
)

// Headers on a redelivery (a dead letter replayed), next to the event's
// own ce- headers.
const (
	// HeaderRedeliveryOf is the dead letter's sequence in StreamDLQ.
	HeaderRedeliveryOf = "plugbus-redelivery-of"
	// HeaderRedeliveryStreamSeq is the stream sequence of the delivery
	// the consumer gave up on.
	HeaderRedeliveryStreamSeq = "plugbus-redelivery-stream-seq"
)

// Replay outcomes of one dead letter (DLQReplayResult.Status).
const (
	ReplayReplayed        = "replayed"
	ReplayAlreadyReplayed = "already_replayed"
	ReplayFailed          = "failed"
)

// ReplayedByAdmin is DLQReplay.ReplayedBy: the identity the server let
// call dlq.replay.
const ReplayedByAdmin = "admin"

// DLQListRequest asks for dead letters, oldest first, from FromSeq on
// (the stream's first when 0), at most Limit (default 100, at most
// MaxDLQPage) of them.
type DLQListRequest struct {
	// Consumer keeps the dead letters of one consumer ("plugin_NAME").
	Consumer string `json:"consumer,omitempty"`
	// Code keeps those with this reason code (ReasonCodes).
	Code    string `json:"code,omitempty"`
	FromSeq uint64 `json:"from_seq,omitempty"`
	Limit   int    `json:"limit,omitempty"`
}

// DLQListResponse answers DLQListRequest.
type DLQListResponse struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	// NextSeq is where the next page starts; 0 when there is no more.
	NextSeq uint64 `json:"next_seq,omitempty"`
	// Pending is how many dead letters of the consumer (every consumer's
	// without Consumer), any code, the stream held from FromSeq on when
	// the page was read: a bound for progress.
	Pending uint64 `json:"pending"`
}

// DLQRef names one dead letter by its sequence in StreamDLQ.
type DLQRef struct {
	Seq uint64 `json:"seq"`
}

// DeadLetter is one message of StreamDLQ: what its plugbus-dlq-* headers
// say, the event's attributes, and whether it was replayed.
type DeadLetter struct {
	// Seq is its sequence in StreamDLQ; Time when it was dead-lettered.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Consumer gave up on the event: the delivery of stream sequence
	// StreamSeq of Stream, on Subject, after Deliveries deliveries.
	Consumer   string `json:"consumer"`
	Stream     string `json:"stream,omitempty"`
	StreamSeq  uint64 `json:"stream_seq,omitempty"`
	Subject    string `json:"subject,omitempty"`
	Deliveries uint64 `json:"deliveries,omitempty"`
	// Cause is CauseMaxDeliveries or CauseTerminated; Code the reason
	// code the consumer gave (ReasonCodes), Reason the whole reason.
	Cause  string `json:"cause,omitempty"`
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// The event's ce-id, ce-type, ce-source and ce-subject.
	EventID      string `json:"event_id,omitempty"`
	EventType    string `json:"event_type,omitempty"`
	EventSource  string `json:"event_source,omitempty"`
	EventSubject string `json:"event_subject,omitempty"`
	// Replay says when and how it was replayed; nil when it was not.
	Replay *DLQReplay `json:"replay,omitempty"`
	// Message is the dead letter as stored (dlq.get only).
	Message *StoredMessage `json:"message,omitempty"`
}

// DLQReplay records one replay of a dead letter (BucketDLQReplays).
type DLQReplay struct {
	DLQSeq   uint64 `json:"dlq_seq"`
	Consumer string `json:"consumer"`
	EventID  string `json:"event_id,omitempty"`
	// ReplayedAt is when the broker stored the redelivery, ReplayedBy the
	// identity that asked (ReplayedByAdmin: the server lets no other call
	// dlq.replay), RequestedBy who the client said it acts for ($USER@host
	// for busctl; the client's word, not checked).
	ReplayedAt  time.Time `json:"replayed_at"`
	ReplayedBy  string    `json:"replayed_by"`
	RequestedBy string    `json:"requested_by,omitempty"`
	// Subject and EventSeq are the redelivery's subject
	// (wire.RedeliverySubject) and sequence in StreamEvents.
	Subject  string `json:"subject"`
	EventSeq uint64 `json:"event_seq"`
}

// DLQReplayKey is the BucketDLQReplays key of the dead letter of
// consumer's delivery of stream sequence streamSeq.
func DLQReplayKey(consumer string, streamSeq uint64) string {
	return consumer + "." + strconv.FormatUint(streamSeq, 10)
}

// DLQReplayRequest replays dead letters, each to the consumer that gave
// up on it, once.
type DLQReplayRequest struct {
	Seqs        []uint64 `json:"seqs"`
	RequestedBy string   `json:"requested_by,omitempty"`
}

// DLQReplayResponse has one result per requested sequence, in order.
type DLQReplayResponse struct {
	Results []DLQReplayResult `json:"results"`
}

// DLQReplayResult is what became of one dead letter.
type DLQReplayResult struct {
	Seq      uint64 `json:"seq"`
	Consumer string `json:"consumer,omitempty"`
	EventID  string `json:"event_id,omitempty"`
	// Status is ReplayReplayed, ReplayAlreadyReplayed (Replay is the
	// first replay) or ReplayFailed (Error says why).
	Status string     `json:"status"`
	Replay *DLQReplay `json:"replay,omitempty"`
	Error  *Error     `json:"error,omitempty"`
}

// DLQPurgeRequest removes dead letters: the ones named by Seqs, or every
// one of Consumer, or with All every one. Exactly one of the three.
type DLQPurgeRequest struct {
	Seqs     []uint64 `json:"seqs,omitempty"`
	Consumer string   `json:"consumer,omitempty"`
	All      bool     `json:"all,omitempty"`
}

// DLQPurgeResponse says how many dead letters went, and which of the
// named ones were not there.
type DLQPurgeResponse struct {
	Purged   uint64   `json:"purged"`
	NotFound []uint64 `json:"not_found,omitempty"`
}
