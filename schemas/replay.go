package schemas

import (
	"strings"
	"time"
)

// Replay: redelivering past events to one plugin (docs/replay.md). The
// broker creates a second consumer on the event stream for the plugin,
// ReplayConsumerName, that starts where the replay starts and is used up
// to where the plugin's durable consumer had got (UntilSeq); the plugin's
// instances pull from it beside their durable consumer, which keeps its
// place, so new events keep flowing and nothing after UntilSeq comes
// twice. Only admins may start one.
const (
	APIPluginsReplay       = "plugins.replay"        // PluginReplayRequest → ReplayStatus (admin)
	APIPluginsReplayStatus = "plugins.replay-status" // PluginGetRequest → ReplayStatus (admin)
	APIPluginsReplayCancel = "plugins.replay-cancel" // PluginGetRequest → ReplayStatus (admin)

	APIPluginReplayRequest = "api/v1/plugin_replay_request.json" // PluginReplayRequest
	APIReplayStatus        = "api/v1/replay_status.json"         // ReplayStatus
	APIReplayNotice        = "api/v1/replay_notice.json"         // ReplayNotice

	// VerbReplay is the plugin control subject ("<prefix>.plugin.<name>.replay")
	// on which the broker tells every instance of a plugin (a plain
	// subscription, not a queue group) that a replay consumer is there to
	// pull from: ReplayNotice → ReplayNoticeResponse.
	VerbReplay = "replay"

	// ExtensionReplay is the CloudEvents extension attribute the SDK sets
	// on an event it delivers from a replay, to the replay's id. It is not
	// stored: the event in the stream, its id included, is the original.
	ExtensionReplay = "plugbusreplay"

	// Metadata keys of a replay consumer (JetStream consumer metadata), so
	// that any broker replica and every plugin instance can read what the
	// replay is from the consumer itself.
	MetadataReplayID      = "plugbus_replay_id"
	MetadataReplayUntil   = "plugbus_replay_until_seq"
	MetadataReplayTotal   = "plugbus_replay_total"
	MetadataReplayStarted = "plugbus_replay_started"
	MetadataReplayTypes   = "plugbus_replay_types" // comma separated

	// replayConsumerPrefix starts a replay consumer's name; plugin names
	// hold no "_", so it cannot be taken for a plugin's durable.
	replayConsumerPrefix = "replay_"
)

// ReplayConsumerName returns the name of a plugin's replay consumer on the
// event stream ("replay_NAME"). A plugin has at most one replay at a time.
func ReplayConsumerName(plugin string) string { return replayConsumerPrefix + plugin }

// ConsumerPlugin returns the durable consumer name (ConsumerName) of the
// plugin a consumer of the event stream delivers to: itself for a
// plugin's durable, the plugin's durable for its replay consumer. Dead
// letters of a replayed event are kept under the plugin's durable.
func ConsumerPlugin(consumer string) string {
	if name, ok := strings.CutPrefix(consumer, replayConsumerPrefix); ok && name != "" {
		return ConsumerName(name)
	}
	return consumer
}

// PluginReplayRequest asks the broker to redeliver past events to one
// plugin: those of its subscribed types (or of Types, each within them)
// stored from FromSeq, or from FromTime on — exactly one of the two — up
// to the last event its durable consumer had been given.
type PluginReplayRequest struct {
	Name string `json:"name"`
	// FromSeq is the first stream sequence to replay (1 or more); a
	// sequence older than the stream's first starts at the first.
	FromSeq uint64 `json:"from_seq,omitempty"`
	// FromTime replays the events stored at or after it.
	FromTime *time.Time `json:"from_time,omitempty"`
	// Types narrows the replay to these event types (or type patterns),
	// each of which must be among the plugin's subscribed types.
	Types []string `json:"types,omitempty"`
}

// ReplayStatus describes a plugin's replay: what it covers and how far it
// has got.
type ReplayStatus struct {
	// ID identifies the replay; replayed events carry it in the
	// ExtensionReplay attribute (and sdk.Delivery.Replay).
	ID     string `json:"id,omitempty"`
	Plugin string `json:"plugin"`
	// Consumer is the replay consumer (ReplayConsumerName); empty when
	// there was nothing to replay.
	Consumer string `json:"consumer,omitempty"`
	// Types are the event types replayed: the request's, else the
	// plugin's subscribed types.
	Types []string `json:"types"`
	// FromSeq and FromTime are where the replay starts, as asked (FromSeq
	// raised to the stream's first sequence when older).
	FromSeq  uint64     `json:"from_seq,omitempty"`
	FromTime *time.Time `json:"from_time,omitempty"`
	// UntilSeq is the last stream sequence replayed: the last event the
	// plugin's durable consumer had been given when the replay started.
	// Later events reach the plugin through its durable consumer only.
	UntilSeq uint64 `json:"until_seq"`
	// Total is how many events the replay redelivers.
	Total uint64 `json:"total"`
	// Replayed is how many of them the plugin has handled so far
	// (acknowledged, or given up on and dead-lettered); Remaining is the
	// rest.
	Replayed  uint64 `json:"replayed"`
	Remaining uint64 `json:"remaining"`
	// Done is set once every event of the replay is handled; the replay
	// consumer is then deleted. Cancelled is set when replay-cancel
	// stopped it first.
	Done      bool      `json:"done"`
	Cancelled bool      `json:"cancelled,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// ReplayNotice tells a plugin's instances that a replay consumer is ready
// for them to pull from (VerbReplay).
type ReplayNotice struct {
	ID       string `json:"id"`
	Consumer string `json:"consumer"`
}

// ReplayNoticeResponse is an instance's answer to a ReplayNotice.
type ReplayNoticeResponse struct {
	// Instance is the id of the instance that answered first.
	Instance string `json:"instance,omitempty"`
}

// ReplayDone reports whether a replay consumer has done its work, from its
// state: every event up to until is acknowledged or terminated (the ack
// floor has reached it), or nothing is pending at all. A replay consumer
// delivers in stream order, so once its ack floor passes until, no event
// of the replay is left.
func ReplayDone(ackFloorStream, until, numPending, numAckPending uint64) bool {
	return ackFloorStream >= until || numPending == 0 && numAckPending == 0
}
