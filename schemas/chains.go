package schemas

import (
	"encoding/json"
	"strconv"
	"time"
)

// The chain journal (docs/hooks.md, "Resumable chains"): the broker
// journals every hook chain run of an operation in StreamChains before it
// acts on a step's answer, so a chain cut by a broker crash resumes from
// its last completed step (on the restarted broker or on another one) and
// its operation completes once. chains.get and chains.list read it.
const (
	APIChainsGet  = "chains.get"  // ChainGetRequest → ChainStatus (admin)
	APIChainsList = "chains.list" // ChainListRequest → ChainListResponse (admin)

	APIChainGetRequest   = "api/v1/chain_get_request.json"   // ChainGetRequest
	APIChainStatus       = "api/v1/chain_status.json"        // ChainStatus
	APIChainListRequest  = "api/v1/chain_list_request.json"  // ChainListRequest
	APIChainListResponse = "api/v1/chain_list_response.json" // ChainListResponse

	// StreamChains is the chain journal: one subject per operation, chain
	// and step below "<prefix>.chains.", one message per subject, bounded
	// by age and size (the broker's chain retention settings).
	StreamChains = "PLUGBUS_CHAINS"
)

// ChainRunning is the outcome of a chain that chains.get finds unfinished:
// steps remain, and the broker running its operation (or the one that
// takes it over after a crash) goes on with them. A finished chain has one
// of the other outcomes; chain_completed events never carry this one.
const ChainRunning = "running"

// Operation states in a ChainStatus.
const (
	// OperationRunning: the operation has not answered yet (its chains
	// run, or it waits to be resumed after its broker stopped).
	OperationRunning = "running"
	// OperationDone: the operation answered; Result or Error is the answer.
	OperationDone = "done"
)

// DefaultChainListLimit is how many chains chains.list returns when the
// request sets no limit; MaxChainListLimit is the most it returns.
const (
	DefaultChainListLimit = 50
	MaxChainListLimit     = 1000
)

// ChainGetRequest names one chain run by its id (ChainRecord.ID, as every
// step request's chain_id carries it).
type ChainGetRequest struct {
	ID string `json:"id"`
}

// ChainStatus is one chain run as the journal holds it, and the operation
// it belongs to.
type ChainStatus struct {
	// Chain is the run: every step journalled so far; Outcome is
	// ChainRunning until the chain is finished.
	Chain ChainRecord `json:"chain"`
	// Operation is the API call that ran the chain, and its answer once it
	// has one.
	Operation ChainOperation `json:"operation"`
}

// ChainOperation is the API operation a chain run belongs to.
type ChainOperation struct {
	// ID is the operation's id (derived from the caller's idempotency key).
	ID string `json:"id"`
	// Endpoint is the API endpoint called ("jobs.deploy", …).
	Endpoint string `json:"endpoint"`
	// State is OperationRunning or OperationDone.
	State string `json:"state"`
	// Attempt counts the runs of the operation that started afresh: a retry
	// after an answer that said to retry (a timeout, say) runs the chains
	// again, under new chain ids. A run resumed after a crash keeps its
	// attempt.
	Attempt   int       `json:"attempt"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Resumes counts how often the operation was taken over after its
	// broker stopped before answering.
	Resumes int `json:"resumes,omitempty"`
	// Result is the operation's reply when it succeeded (the endpoint's
	// response type), Error its error when it failed; both empty while it
	// runs.
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// ChainListRequest asks for the most recent chain runs of the journal,
// newest first. Object narrows to one object ("job/web"), Hook to one hook
// point; Limit bounds the answer (default DefaultChainListLimit, at most
// MaxChainListLimit).
type ChainListRequest struct {
	Object string `json:"object,omitempty"`
	Hook   string `json:"hook,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// ChainSummary is one chain run in a ChainListResponse.
type ChainSummary struct {
	ID        string    `json:"id"`
	Hook      string    `json:"hook"`
	Object    string    `json:"object"`
	Operation string    `json:"operation"`
	Endpoint  string    `json:"endpoint,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// Steps is the number of steps of the chain.
	Steps int `json:"steps"`
	// Outcome is the chain's outcome, ChainRunning while it is not
	// finished.
	Outcome string `json:"outcome"`
	// Resumed says the chain was continued after its broker stopped.
	Resumed bool `json:"resumed,omitempty"`
}

// ChainListResponse answers ChainListRequest.
type ChainListResponse struct {
	Chains []ChainSummary `json:"chains"`
	// Truncated is true when more chains matched than Limit.
	Truncated bool `json:"truncated,omitempty"`
}

// StepKey is the idempotency key of one step of a chain run: the chain id
// and the step's position. The broker sends it with every step request (in
// the Idempotency-Key header, wire.HeaderIdempotencyKey); a step sent
// again after a crash carries the same key, so a plugin can tell a repeat.
func StepKey(chainID string, step int) string {
	return chainID + "/" + strconv.Itoa(step)
}
