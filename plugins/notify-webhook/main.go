// Command notify-webhook posts plugbus alerts to a Slack-compatible incoming
// webhook. It consumes io.plugbus.alert.v1.fired and
// io.plugbus.alert.v1.resolved and POSTs one JSON message per event:
//
//	{"text": "...", "username": "...", "channel": "...",
//	 "attachments": [{"color": "danger", "fields": [{"title": "host", "value": "m1", "short": true}]}]}
//
// Config: url (required, the webhook URL), channel and username (optional,
// passed through). A network error, a 5xx or a 429 answer is retried with
// the manifest's backoff (429 honours Retry-After); any other 4xx is
// permanent and the event goes to the dead-letter stream. Each event is
// posted once: a redelivery of an event already posted (its ack lost) is
// acknowledged without a second POST (sdk Plugin.OnceByEventID); only a
// crash in the instant between a POST and its mark can repeat one. An
// operator's replay (busctl plugins replay notify-webhook) posts the
// replayed alerts once more, once per replay (docs/replay.md).
package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Config keys.
const (
	ConfigURL      = "url"
	ConfigChannel  = "channel"
	ConfigUsername = "username"
)

// configSchema is the manifest's config schema: the broker validates the
// config against it before the plugin sees it, and shows the writeOnly
// url to nobody else.
const configSchema = `{
  "type": "object",
  "properties": {
    "url": {"type": "string", "format": "uri", "pattern": "^https?://", "writeOnly": true,
            "description": "Slack-compatible incoming webhook URL; its path is the webhook's secret, so it is writeOnly: only this plugin reads it back"},
    "channel": {"type": "string", "description": "channel override, e.g. #alerts"},
    "username": {"type": "string", "description": "sender name shown in the channel"}
  },
  "required": ["url"]
}`

// Manifest returns the plugin's manifest.
func Manifest() schemas.Manifest {
	sec := func(n int) schemas.Duration { return schemas.Duration(time.Duration(n) * time.Second) }
	return schemas.Manifest{
		Name:        "notify-webhook",
		Version:     Version,
		Description: "Posts alerts to a Slack-compatible incoming webhook",
		URL:         "https://github.com/plugbus/plugbus/tree/main/plugins/notify-webhook",
		Category:    "notification",
		Events: &schemas.EventSubscription{
			Types:      []string{schemas.TypeAlertFired, schemas.TypeAlertResolved},
			AckWait:    sec(30), // more than the HTTP timeout
			MaxDeliver: 5,
			Backoff:    []schemas.Duration{sec(1), sec(2), sec(5)},
		},
		RequiredParams: []string{ConfigURL},
		ConfigSchema:   json.RawMessage(configSchema),
	}
}

func main() {
	sdk.Main(Manifest(), Setup)
}

// Setup wires a Notifier to the plugin. Each event is posted once
// (p.OnceByEventID): an event delivered again after its POST succeeded —
// its acknowledgement lost, the plugin killed right after — is not posted
// a second time.
func Setup(p *sdk.Plugin) error {
	n := NewNotifier(p.Config)
	p.OnConfig(n.CheckConfig)
	p.OnVerify(func(ctx context.Context) error { return n.CheckConfig(ctx, p.Config()) })
	post := p.OnceByEventID(n.HandleEvent)
	p.HandleEvent(schemas.TypeAlertFired, post)
	p.HandleEvent(schemas.TypeAlertResolved, post)
	return nil
}
