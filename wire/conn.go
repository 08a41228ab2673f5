package wire

import (
	"time"

	"github.com/nats-io/nats.go"
)

// StalePingInterval and StaleMaxPings bound how long a connection stays on
// a server that stopped answering (frozen, cut off without a reset): the
// client pings every StalePingInterval and leaves after StaleMaxPings
// unanswered pings, then reconnects to another server of the cluster.
const (
	StalePingInterval = 2 * time.Second
	StaleMaxPings     = 3
)

// StaleServerOptions are the nats.go options every plugbus component
// connects with so that it leaves a server that stopped answering within
// StalePingInterval × StaleMaxPings (6–8 s) instead of nats.go's default of
// minutes (a 2-minute ping interval, 2 pings): on a cluster, requests and
// deliveries through a frozen node are lost to that component until it
// leaves. The cluster's routes need the same bound on the server side
// (cluster { ping_interval, ping_max }, docs/scale-out.md).
func StaleServerOptions() []nats.Option {
	return []nats.Option{nats.PingInterval(StalePingInterval), nats.MaxPingsOutstanding(StaleMaxPings)}
}
