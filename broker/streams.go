package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// The stream and bucket names are in package schemas (schemas.StreamEvents
// and the like), so every tool finds them without configuration.
const (
	// dlqConsumer is the broker's durable consumer on the advisory stream.
	dlqConsumer = "broker_dlq"
)

// Advisory subject prefixes the dead-letter path listens to.
const (
	advisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
	advisoryTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"
)

type stores struct {
	events     jetstream.Stream
	dlq        jetstream.Stream
	logs       jetstream.Stream
	hosts      jetstream.KeyValue
	hostctl    jetstream.KeyValue
	identities jetstream.KeyValue
	plugins    jetstream.KeyValue
	configs    jetstream.KeyValue
	machines   jetstream.KeyValue
	jobs       jetstream.KeyValue
	alerts     jetstream.KeyValue
	requests   jetstream.KeyValue
	handled    jetstream.KeyValue
	actions    jetstream.KeyValue
	dlqReplays jetstream.KeyValue
	locks      jetstream.KeyValue
}

// ensureStores creates (or updates) every stream and bucket the bus needs.
// It is idempotent: a restart finds them as they were.
func ensureStores(ctx context.Context, js jetstream.JetStream, cfg Config) (*stores, error) {
	var st stores
	var err error
	st.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        schemas.StreamEvents,
		Description: "plugbus core and plugin events (CloudEvents, binary mode)",
		Subjects:    []string{wire.EventsSubject(cfg.Prefix)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.EventMaxAge,
		MaxBytes:    cfg.EventMaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  cfg.EventDedupWindow,
		MaxMsgSize:  int32(cfg.MaxRequestBytes),
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", schemas.StreamEvents, err)
	}
	st.dlq, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        schemas.StreamDLQ,
		Description: "plugbus dead letters: events a plugin could not handle, with the reason",
		Subjects:    []string{wire.DLQSubjects(cfg.Prefix)},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  10 * time.Minute,
		// Bounded: the oldest dead letters go first.
		MaxAge:   cfg.DLQMaxAge,
		MaxBytes: cfg.DLQMaxBytes,
		Discard:  jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", schemas.StreamDLQ, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        schemas.StreamAdvisories,
		Description: "JetStream delivery advisories of the event stream, consumed by the broker's dead-letter path",
		Subjects: []string{
			advisoryMaxDeliveries + "." + schemas.StreamEvents + ".*",
			advisoryTerminated + "." + schemas.StreamEvents + ".*",
		},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  cfg.Replicas,
		MaxAge:    cfg.EventMaxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", schemas.StreamAdvisories, err)
	}
	st.logs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        schemas.StreamLogs,
		Description: "plugbus plugin log lines forwarded by hostd, bounded by age and size",
		Subjects:    []string{wire.LogsSubject(cfg.Prefix, "*", "*")},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.LogMaxAge,
		MaxBytes:    cfg.LogMaxBytes,
		Discard:     jetstream.DiscardOld,
		MaxMsgSize:  256 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", schemas.StreamLogs, err)
	}
	buckets := []struct {
		name, desc string
		kv         *jetstream.KeyValue
		// records are jobs and alerts: one revision (an expired one must
		// not bring back an older), and per-key TTLs for retention.
		records bool
		// latest keeps one revision per key, without per-key TTLs (the
		// bucket's age limit is the TTL).
		latest bool
		ttl    time.Duration
	}{
		{name: schemas.BucketPlugins, desc: "plugbus plugin registry: manifest, state, metadata", kv: &st.plugins},
		{name: schemas.BucketConfigs, desc: "plugbus plugin configs, watched by every plugin instance", kv: &st.configs},
		{name: schemas.BucketMachines, desc: "plugbus machines and their params", kv: &st.machines},
		{name: schemas.BucketJobs, desc: "plugbus jobs; a deleted one leaves after the job retention", kv: &st.jobs, records: true},
		{name: schemas.BucketAlerts, desc: "plugbus alerts; a resolved one leaves after the alert retention", kv: &st.alerts, records: true},
		{name: schemas.BucketActions, desc: "plugbus actions: status, progress, outcome; a finished one leaves after the action retention", kv: &st.actions, records: true},
		{name: schemas.BucketHosts, desc: "plugbus hosts, as each hostd reports it", kv: &st.hosts},
		{name: schemas.BucketHostControl, desc: "plugbus operators' overrides per host and plugin, followed by hostd", kv: &st.hostctl},
		{name: schemas.BucketIdentities, desc: "plugbus identities: the credentials issued to each plugin and host (broker only)", kv: &st.identities},
		{name: schemas.BucketDLQReplays, desc: "plugbus: every replay of a dead letter, so each is replayed once (busctl dlq replay)", kv: &st.dlqReplays,
			ttl: cfg.DLQMaxAge},
		{name: schemas.BucketRequests, desc: "plugbus replies to requests with an idempotency key, for the idempotency window", kv: &st.requests,
			latest: true, ttl: cfg.IdempotencyWindow},
	}
	for _, b := range buckets {
		kc := jetstream.KeyValueConfig{
			Bucket:      b.name,
			Description: b.desc,
			History:     5,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			TTL:         b.ttl,
		}
		if b.records || b.latest {
			kc.History = 1
		}
		if b.records {
			// Per-key TTLs need markers on; a marker tells a live watcher
			// that a record left, so it need not stay long: each is a
			// stored message and an index entry while it lasts.
			kc.LimitMarkerTTL = time.Second
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
		if err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	// What plugins handled (sdk Plugin.Once): one value per key, kept as
	// long as the events that may be redelivered.
	st.handled, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      schemas.BucketHandled,
		Description: "plugbus: what each plugin handled, so a redelivery does not repeat a side effect (sdk Plugin.Once)",
		History:     1,
		TTL:         cfg.EventMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", schemas.BucketHandled, err)
	}
	// The brokers' leases and object locks (lease.go, buslock.go): one
	// value per key; lease keys expire by their own TTL, and the markers
	// of expiries and releases stay long enough for a watcher that fell
	// behind to see them.
	st.locks, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         schemas.BucketLocks,
		Description:    "plugbus brokers' leases and per-object lock tickets (broker only)",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       cfg.Replicas,
		LimitMarkerTTL: lockMarkerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", schemas.BucketLocks, err)
	}
	return &st, nil
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}
