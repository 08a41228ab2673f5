package identity

import (
	"slices"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// A plugin pulls from its own replay consumer and no other, and cannot
// start, follow or cancel a replay: that is the admin's.
func TestReplayPermissions(t *testing.T) {
	p := Permissions("plugbus", Identity{Role: RolePlugin, Name: "inc"})
	for _, s := range []string{
		"$JS.API.CONSUMER.INFO.PLUGBUS_EVENTS.replay_inc",
		"$JS.API.CONSUMER.MSG.NEXT.PLUGBUS_EVENTS.replay_inc",
		"$JS.ACK.PLUGBUS_EVENTS.replay_inc.>",
	} {
		if !slices.Contains(p.Pub.Allow, s) {
			t.Errorf("plugin inc may not publish %s", s)
		}
	}
	for _, s := range p.Pub.Allow {
		if s == "$JS.API.CONSUMER.MSG.NEXT.PLUGBUS_EVENTS.replay_other" || s == "$JS.API.CONSUMER.MSG.NEXT.PLUGBUS_EVENTS.*" {
			t.Errorf("plugin inc may publish %s", s)
		}
	}
	for _, e := range []string{schemas.APIPluginsReplay, schemas.APIPluginsReplayStatus, schemas.APIPluginsReplayCancel} {
		if slices.Contains(PluginAPI, e) {
			t.Errorf("a plugin may call %s", e)
		}
	}
	admin := Permissions("plugbus", Identity{Role: RoleAdmin})
	if !slices.Contains(admin.Pub.Allow, "plugbus.api.>") {
		t.Error("the admin may not call the replay API")
	}
}
