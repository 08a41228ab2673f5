package sdk

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// eventNameRe is what Emit takes as an event name: dot-separated tokens,
// no wildcards.
var eventNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// Emit publishes one of the plugin's own events and returns its id once
// the event stream has stored it. name is the event's name below the
// plugin ("counter.v1.changed"): the event's type is
// io.plugbus.plugin.NAME.<name> (wire.PluginEventType), its source
// /plugbus/plugins/NAME, its subject PREFIX.evt.plugin.NAME.<name>, and
// data is its JSON body. Those are the only events a plugin's
// credentials may publish; other plugins consume them by type like any
// event, and their SDK refuses an event on that subject with another
// source (wire.CheckOrigin). The event carries the trace context of ctx,
// when it has one (the ce-traceparent extension), so an event emitted by a
// handler belongs to the trace of what it handles. Before Run connects it
// fails with an error wrapping client.ErrNotConnected.
func (p *Plugin) Emit(ctx context.Context, name string, data any) (string, error) {
	if !eventNameRe.MatchString(name) {
		return "", fmt.Errorf("emit %q: an event name is dot-separated letters, digits, _ and - (such as counter.v1.changed)", name)
	}
	p.mu.RLock()
	js := p.js
	p.mu.RUnlock()
	if js == nil {
		return "", fmt.Errorf("emit %s: %w", name, client.ErrNotConnected)
	}
	e := event.New()
	e.SetID(nuid.Next())
	e.SetType(wire.PluginEventType(p.manifest.Name, name))
	e.SetSource(wire.PluginSource(p.manifest.Name))
	e.SetTime(time.Now().UTC())
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return "", fmt.Errorf("emit %s: encode data: %w", name, err)
	}
	// An event emitted while handling a call or an event carries its trace.
	wire.SetEventTrace(ctx, &e)
	subject := wire.PluginEventSubject(p.opts.prefix, p.manifest.Name) + "." + name
	msg, err := wire.EncodeEvent(ctx, subject, &e)
	if err != nil {
		return "", fmt.Errorf("emit %s: %w", name, err)
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID()), jetstream.WithExpectStream(schemas.StreamEvents)); err != nil {
		return "", fmt.Errorf("emit %s on %s: %w (is the broker running? it creates stream %s)", name, subject, err, schemas.StreamEvents)
	}
	return e.ID(), nil
}
