package schemas

// Several brokers on one bus (docs/scale-out.md) coordinate through one KV
// bucket: each broker process holds a lease on the bus (a key with a TTL
// it renews), operations on one object queue for it with tickets, and the
// broker at the head of the leader queue runs the duties that must run
// once (plugin heartbeats, host LOST marking, dead-letter copying).
const (
	// BucketLocks holds the brokers' leases ("s.<lease id>", with a TTL)
	// and their tickets for objects ("t.<lease id>.<slot>" → LockTicket).
	// Broker only.
	BucketLocks = "plugbus_locks"

	// LockLeader is the object whose lock the leading broker holds.
	LockLeader = "broker/leader"
)

// LockTicket is the value of a ticket key in BucketLocks: a broker's place
// in the queue for one object. The ticket with the lowest revision whose
// lease is alive holds the object.
type LockTicket struct {
	// Object is what the ticket queues for: "job/NAME", "machine/NAME",
	// "alert/ID", "plugin/NAME" or LockLeader.
	Object string `json:"object"`
	// Lease is the id of the broker lease the ticket lives and dies with.
	Lease string `json:"lease"`
	// Broker names the broker process (host and pid), for people.
	Broker string `json:"broker,omitempty"`
}

// LockLease is the value of a lease key in BucketLocks.
type LockLease struct {
	// Broker names the broker process (host and pid), for people.
	Broker string `json:"broker"`
	// DataDir is the data dir of an embedded broker: a broker that takes
	// the lock on that dir knows a lease naming it (on the same host) is
	// a dead predecessor's.
	DataDir string `json:"data_dir,omitempty"`
	// Host is the host name the broker runs on.
	Host string `json:"host,omitempty"`
	// TTLSeconds is the lease's time to live: it ends that long after its
	// last renewal.
	TTLSeconds float64 `json:"ttl_seconds"`
}

// Keys of Error.Details for operations on several brokers.
const (
	// DetailObject names the object ("job/NAME", …) an operation could not
	// lock, or lost the lock of.
	DetailObject = "object"
	// DetailCommitted says whether a failed operation was committed
	// (true: it is done and completes; false: nothing was done). Absent
	// when the broker cannot tell: retry with the same idempotency key to
	// learn the outcome.
	DetailCommitted = "committed"
)
