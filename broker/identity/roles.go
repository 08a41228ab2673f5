// Package identity is the bus's authority: the NATS operator, the plugbus
// account and its signing key, the user credentials of every identity
// (broker, admin, host, plugin) with the permissions the server enforces
// for each, and their revocation.
//
// The mechanism is NATS decentralized JWT auth: every user is a JWT signed
// by the account's signing key, naming exactly what it may publish and
// subscribe to; the server checks each connection's JWT and enforces its
// permissions; revoking a user is a revocation in the account JWT, which
// the server applies at once, closing the user's connections. The
// broker's embedded server trusts the operator through an in-memory
// resolver; an external NATS is set up the same way with nsc (see
// docs/security.md).
package identity

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/jwt/v2"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Role is what an identity is.
type Role string

// Roles.
const (
	RoleBroker Role = "broker"
	RoleAdmin  Role = "admin"
	RoleHost   Role = "host"
	RolePlugin Role = "plugin"
)

// Identity names one identity: a role, and the host or plugin name for
// those roles.
type Identity struct {
	Role Role
	Name string
}

func (i Identity) String() string {
	if i.Name == "" {
		return string(i.Role)
	}
	return string(i.Role) + " " + i.Name
}

// UserName is the identity's NATS user name (the JWT's name).
func (i Identity) UserName() string {
	if i.Name == "" {
		return "plugbus-" + string(i.Role)
	}
	return "plugbus-" + string(i.Role) + "-" + i.Name
}

// PluginAPI lists the broker API endpoints a plugin may call (besides
// registering and unregistering itself). Everything else of the API is
// the admin's.
var PluginAPI = []string{
	schemas.APIPluginsList, schemas.APIPluginsGet, schemas.APIHooksList,
	schemas.APIJobsGet, schemas.APIJobsList,
	schemas.APIMachinesGet, schemas.APIMachinesList, schemas.APIMachinesSetParam,
	schemas.APIAlertsFire, schemas.APIAlertsResolve, schemas.APIAlertsList, schemas.APIAlertsGet,
}

// adminStreams are the streams the admin reads.
var adminStreams = []string{schemas.StreamEvents, schemas.StreamDLQ, schemas.StreamLogs}

// Permissions returns what an identity may publish and subscribe to on a
// bus with this subject prefix. The server enforces them; docs/security.md
// has them as tables (a test keeps the two in step).
func Permissions(prefix string, id Identity) jwt.Permissions {
	var p jwt.Permissions
	inbox := wire.InboxPrefix(string(id.Role), id.Name) + ".>"
	pub := func(s ...string) { p.Pub.Allow.Add(s...) }
	sub := func(s ...string) { p.Sub.Allow.Add(s...) }
	switch id.Role {
	case RoleBroker:
		pub(">")
		sub(">")
	case RoleAdmin:
		pub(wire.APISubject(prefix, ">"), "$SRV.>", "$JS.API.INFO")
		for _, s := range adminStreams {
			// Stream info and single messages (nats stream info, nats
			// stream get); the flow control answers of the push consumers
			// streams.read makes for it. No consumer API at all: a
			// consumer subject cannot tell a reader's consumer from a
			// plugin's durable one, so the broker makes readers' consumers.
			pub("$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.MSG.GET."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
				"$JS.FC."+s+".>")
		}
		// Live events, dead letters and logs as they are published
		// (nats sub), and its replies.
		sub(wire.EventsSubject(prefix), wire.DLQSubjects(prefix), wire.LogsSubject(prefix, "", ""), inbox)
	case RoleHost:
		h := id.Name
		pub(wire.HostAPISubject(prefix, schemas.APIHostsPluginCreds, h),
			wire.LogsSubject(prefix, h, "*"),
			"$KV."+schemas.BucketHosts+"."+h,
			"$JS.API.STREAM.INFO.KV_"+schemas.BucketHosts, "$JS.API.STREAM.INFO.KV_"+schemas.BucketHostControl,
			"$JS.API.CONSUMER.CREATE.KV_"+schemas.BucketHostControl+".*.$KV."+schemas.BucketHostControl+"."+h+".>",
			"$JS.API.CONSUMER.DELETE.KV_"+schemas.BucketHostControl+".*",
			"$JS.FC.KV_"+schemas.BucketHostControl+".>",
			// Readiness: hostd pings the services of its plugins.
			"$SRV.PING.>")
		sub(inbox)
	case RolePlugin:
		n := id.Name
		svc := wire.PluginService(n)
		sub(wire.PluginSubject(prefix, n, "*"), wire.HookSubject(prefix, "*.*", n),
			"$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.*."+svc, "$SRV.*."+svc+".*", inbox)
		for _, e := range PluginAPI {
			pub(wire.APISubject(prefix, e))
		}
		pub(wire.PluginAPISubject(prefix, schemas.APIPluginsRegister, n), wire.PluginAPISubject(prefix, schemas.APIPluginsUnregister, n),
			wire.PluginEventSubject(prefix, n)+".>")
		// Progress and completion of the actions routed to it, as itself
		// (docs/protocol.md#actions).
		pub(wire.PluginAPISubject(prefix, schemas.APIActionsProgress, n), wire.PluginAPISubject(prefix, schemas.APIActionsComplete, n))
		// Its durable consumer, and its replay consumer while a replay
		// runs (docs/replay.md).
		for _, consumer := range []string{schemas.ConsumerName(n), schemas.ReplayConsumerName(n)} {
			pub("$JS.API.CONSUMER.INFO."+schemas.StreamEvents+"."+consumer,
				"$JS.API.CONSUMER.MSG.NEXT."+schemas.StreamEvents+"."+consumer,
				"$JS.ACK."+schemas.StreamEvents+"."+consumer+".>")
		}
		// Its own config and registry record, read and watched.
		for _, b := range []string{schemas.BucketConfigs, schemas.BucketPlugins} {
			stream := "KV_" + b
			pub("$JS.API.STREAM.INFO."+stream,
				"$JS.API.DIRECT.GET."+stream+".$KV."+b+"."+n,
				"$JS.API.CONSUMER.CREATE."+stream+".*.$KV."+b+"."+n,
				"$JS.API.CONSUMER.DELETE."+stream+".*",
				"$JS.FC."+stream+".>")
		}
		// What it handled (sdk Plugin.Once), below its own name only:
		// read one key (direct get), write one (a KV put or create is a
		// JetStream publish on the key's subject), bind the bucket.
		handled := "KV_" + schemas.BucketHandled
		pub("$KV."+schemas.BucketHandled+"."+n+".>",
			"$JS.API.DIRECT.GET."+handled+".$KV."+schemas.BucketHandled+"."+n+".>",
			"$JS.API.STREAM.INFO."+handled)
		// Replies to the requests it receives, and nothing else.
		p.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	}
	return p
}

// Table renders an identity's permissions as a Markdown table, as
// docs/security.md shows them.
func Table(prefix string, id Identity) string {
	p := Permissions(prefix, id)
	var b strings.Builder
	b.WriteString("| | subjects |\n| --- | --- |\n")
	row := func(what string, subjects []string) {
		if len(subjects) == 0 {
			return
		}
		s := append([]string(nil), subjects...)
		sort.Strings(s)
		quoted := make([]string, len(s))
		for i, x := range s {
			quoted[i] = "`" + x + "`"
		}
		fmt.Fprintf(&b, "| %s | %s |\n", what, strings.Join(quoted, "<br>"))
	}
	row("publish", p.Pub.Allow)
	row("publish, denied", p.Pub.Deny)
	row("subscribe", p.Sub.Allow)
	if p.Resp != nil {
		fmt.Fprintf(&b, "| reply | to the requests it received (one reply each) |\n")
	}
	return b.String()
}
