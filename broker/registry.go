package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// registry keeps plugin records in the plugins bucket and drives each
// plugin's lifecycle. A local cache, fed by a watch on the bucket, serves
// reads on the hot path (action routing); writes always go to the bucket,
// compare-and-set on the revision the operation read, under the plugin's
// lock across brokers (buslock.go). The cache orders what it hears by KV
// revision: a write seen late (through the watch, after this broker's own
// newer write) never replaces a newer one, whatever the clocks say.
type registry struct {
	b *Broker

	mu    sync.RWMutex
	cache map[string]cachedRecord
	// gone holds the revision at which a plugin left the bucket, so a put
	// of it older than that, seen late, does not bring it back.
	gone map[string]uint64
	// index and views are the read side (regview.go), kept in step with
	// the cache under mu.
	index regIndex
	views regViews
	// rounds counts heartbeat rounds (tests).
	rounds atomic.Int64
	// misses counts, per plugin, the heartbeat pings in a row that timed
	// out (missMu guards it; only the heartbeat touches it).
	missMu sync.Mutex
	misses map[string]int
	// seen is the highest bucket revision the watch has applied, so a
	// registration under the hook-order lock can wait for the cache to
	// hold every write made before it took the lock (orderedView).
	seen atomic.Uint64
}

// cachedRecord is a record and the revision it was read or written at.
type cachedRecord struct {
	rec schemas.PluginRecord
	rev uint64
}

// pluginRec is a record as an operation works on it: rev is the revision
// it read (or last wrote), 0 while the record is not stored.
type pluginRec struct {
	schemas.PluginRecord
	rev uint64
}

// hookOrderLock is the bus-wide lock of registrations with hook ordering
// constraints.
const hookOrderLock = "hook-order"

func newRegistry(b *Broker) *registry {
	return &registry{b: b, cache: map[string]cachedRecord{}, gone: map[string]uint64{}, index: newRegIndex()}
}

// lock takes a plugin's lock across brokers: lifecycle work on one plugin
// runs one at a time on the whole bus. The returned context ends if the
// lock is lost; unlock must be called.
func (r *registry) lock(ctx context.Context, name string) (context.Context, func(), error) {
	ctx, ol, err := r.b.locks.lock(ctx, "plugin/"+name)
	if err != nil {
		return ctx, func() {}, err
	}
	return ctx, ol.release, nil
}

// load reads every record into the cache.
func (r *registry) load(ctx context.Context) error {
	keys, err := r.b.st.plugins.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list plugins: %w", err)
	}
	for k := range keys.Keys() {
		rec, err := r.get(ctx, k)
		if err != nil {
			continue
		}
		r.put(rec.PluginRecord, rec.rev)
	}
	return nil
}

// watch keeps the cache in step with the bucket, including writes made by
// other broker replicas, until ctx ends; each entry also goes to the
// outbox sweeper (one watch of the bucket serves both). A watch that
// fails or ends is started again: it replays the bucket, which changes
// nothing the cache already holds.
func (r *registry) watch(ctx context.Context, sweeper *outboxSweeper) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		w, err := r.b.st.plugins.WatchAll(ctx)
		if err != nil {
			if ctx.Err() == nil && (attempt == 0 || attempt%20 == 0) {
				r.b.log.Error().Err(err).Msg("watch plugin registry; retrying")
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
			}
			continue
		}
		attempt = -1
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			sweeper.observe(r.b.st.plugins, e)
			r.apply(e)
		}
		_ = w.Stop()
	}
}

// apply takes one entry of the watch.
func (r *registry) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		r.remove(e.Key(), e.Revision())
		r.markSeen(e.Revision())
		return
	}
	// This broker's own writes are cached already (save puts them):
	// only others', and its own the watch shows first, are decoded.
	if !r.holds(e.Key(), e.Revision()) {
		var rec schemas.PluginRecord
		if err := json.Unmarshal(e.Value(), &rec); err == nil {
			r.put(rec, e.Revision())
		}
	}
	r.markSeen(e.Revision())
}

// put caches rec as stored at revision rev, unless the cache already
// holds a later revision (an older write seen late through the watch).
func (r *registry) put(rec schemas.PluginRecord, rev uint64) {
	r.mu.Lock()
	if cur, ok := r.cache[rec.Name]; ok && cur.rev >= rev {
		r.mu.Unlock()
		return
	}
	if g, ok := r.gone[rec.Name]; ok {
		if g >= rev {
			r.mu.Unlock()
			return
		}
		delete(r.gone, rec.Name)
	}
	var old *schemas.PluginRecord
	if cur, ok := r.cache[rec.Name]; ok {
		old = &cur.rec
	}
	r.cache[rec.Name] = cachedRecord{rec: rec, rev: rev}
	r.changed(rec.Name, old, &rec)
	r.mu.Unlock()
	r.b.metrics.pluginSeen(rec)
}

// holds reports whether the cache already has plugin name at revision
// rev or later, or knows it left the bucket at rev or later: a put at rev
// would change nothing.
func (r *registry) holds(name string, rev uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if cur, ok := r.cache[name]; ok && cur.rev >= rev {
		return true
	}
	g, ok := r.gone[name]
	return ok && g >= rev
}

// markSeen records that the watch applied the bucket up to rev.
func (r *registry) markSeen(rev uint64) {
	for {
		cur := r.seen.Load()
		if cur >= rev || r.seen.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// orderedView returns the cached records once the cache holds every write
// the plugins bucket had when it was called: a registration under the
// hook-order lock then sees the registrations made before it on any broker.
func (r *registry) orderedView(ctx context.Context) ([]schemas.PluginRecord, error) {
	st, err := r.b.st.plugins.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the plugins bucket's status: %w", err)
	}
	var last uint64
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		last = bs.StreamInfo().State.LastSeq
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for r.seen.Load() < last {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the registry to catch up with revision %d: %w", last, ctx.Err())
		case <-tick.C:
		}
	}
	return r.cached(), nil
}

// remove drops a plugin that left the bucket at revision rev (or, from its
// own unregistration, after rev).
func (r *registry) remove(name string, rev uint64) {
	r.mu.Lock()
	if cur, ok := r.cache[name]; ok && cur.rev > rev {
		r.mu.Unlock()
		return
	}
	if r.gone[name] < rev {
		r.gone[name] = rev
	}
	cur, cached := r.cache[name]
	if cached {
		delete(r.cache, name)
		r.changed(name, &cur.rec, nil)
	}
	r.mu.Unlock()
	if cached {
		r.b.metrics.pluginGone(name)
	}
}

// state returns a plugin's cached state ("" when unknown).
func (r *registry) state(name string) schemas.PluginState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cache[name].rec.State
}

// get reads one record from the bucket, with its revision.
func (r *registry) get(ctx context.Context, name string) (pluginRec, error) {
	var rec pluginRec
	e, err := r.b.st.plugins.Get(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return rec, pluginNotFound(name)
		}
		return rec, fmt.Errorf("read plugin %q: %w", name, storeError(err))
	}
	if err := json.Unmarshal(e.Value(), &rec.PluginRecord); err != nil {
		return rec, fmt.Errorf("decode plugin record %q: %w", name, err)
	}
	rec.rev = e.Revision()
	return rec, nil
}

func pluginNotFound(name string) error {
	e := schemas.Errorf(schemas.CodeNotFound, "name", "plugin %q is not registered", name)
	e.Details = map[string]any{schemas.DetailKind: "plugin", schemas.DetailName: name}
	return e
}

// save stamps rec's update time and writes it to the bucket,
// compare-and-set on the revision the operation read, and to the cache.
// A conflict (the outbox sweeper cleared an outbox meanwhile, say) is
// retried with a short backoff on the latest revision while that is the
// same registration; a newer registration wins.
func (r *registry) save(ctx context.Context, rec *pluginRec, events ...*event.Event) error {
	rec.UpdatedAt = time.Now().UTC()
	// A transient state is always followed by the next transition of the
	// same lifecycle run, whose write replaces the outbox: its own is not
	// cleared by a write of its own.
	end := outboxClear
	if transient(rec.State) {
		end = outboxKeep
	}
	for attempt := 0; ; attempt++ {
		// The record and its events in one write (commit.go): a crash
		// cannot leave a state change without its event.
		rev, err := r.b.putWithEvents(ctx, r.b.st.plugins, rec.Name, rec.PluginRecord, rec.rev, end, events...)
		if err == nil {
			rec.rev = rev
			r.put(rec.PluginRecord, rev)
			return nil
		}
		if !errors.Is(err, errConflict) || attempt >= maxConflictRetries {
			return fmt.Errorf("store plugin record %q: %w", rec.Name, err)
		}
		if err := conflictBackoff(ctx, attempt); err != nil {
			return fmt.Errorf("store plugin record %q: %w", rec.Name, err)
		}
		cur, err := r.get(ctx, rec.Name)
		switch {
		case errors.Is(err, schemas.ErrNotFound) && rec.rev != 0:
			return err // unregistered meanwhile
		case errors.Is(err, schemas.ErrNotFound):
			rec.rev = 0
		case err != nil:
			return err
		case rec.rev == 0 || cur.Version != rec.Version || !cur.RegisteredAt.Equal(rec.RegisteredAt):
			e := schemas.Errorf(schemas.CodeConflict, "name", "plugin %s was registered again while this operation ran: it stopped (the newer registration wins)", rec.Name)
			e.Details = map[string]any{schemas.DetailPlugin: rec.Name}
			return e
		default:
			rec.rev = cur.rev
		}
	}
}

// transient reports whether a plugin state is one a lifecycle run passes
// through (REGISTERED, INITIALIZING, CONFIGURING, VERIFYING): the run always
// moves the plugin on from it, to the next step, ACTIVE or ERROR.
func transient(s schemas.PluginState) bool {
	switch s {
	case schemas.StateRegistered, schemas.StateInitializing, schemas.StateConfiguring, schemas.StateVerifying:
		return true
	}
	return false
}

// event builds a plugin lifecycle event (nil, logged, when it cannot be
// encoded: that is a broker bug, and the state change still counts).
func (r *registry) event(eventType, name string, data any) *event.Event {
	e, err := NewEvent(eventType, data, WithSubject("plugin/"+name))
	if err != nil {
		r.b.log.Error().Err(err).Str(logging.FieldEventType, eventType).Msg("build event")
		return nil
	}
	return e
}

// register handles a registration: validate the manifest beyond its schema,
// store the record, create or update the plugin's durable consumer, then run
// the lifecycle. Registering the same manifest again is idempotent.
func (r *registry) register(ctx context.Context, req *schemas.RegisterRequest) (*schemas.RegisterResponse, error) {
	m := req.Manifest
	if err := checkManifest(m); err != nil {
		return nil, err
	}
	ctx, unlock, err := r.lock(ctx, m.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	prev, err := r.get(ctx, m.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, schemas.ErrNotFound) {
		return nil, err
	}
	same := exists && prev.Version == m.Version && reflect.DeepEqual(normalize(prev.Manifest), normalize(m))
	if same && prev.State == schemas.StateActive {
		if err := r.ensureConsumer(ctx, m, exists && prev.Consumer != ""); err != nil {
			return nil, err
		}
		return &schemas.RegisterResponse{Plugin: prev.PluginRecord, Changed: false}, nil
	}

	rec := prev
	now := time.Now().UTC()
	if !exists {
		rec = pluginRec{PluginRecord: schemas.PluginRecord{Name: m.Name, RegisteredAt: now}}
	}
	if !same {
		// A manifest whose ordering constraints would make a cycle in a
		// chain is refused before anything is written.
		// The registrations whose constraints involve each other take
		// the hook-order lock across brokers, from the check to the save,
		// so two of them cannot make a cycle together (chainorder.go).
		unlockOrder := func() {}
		// The lifecycle runs under the plugin's lock alone.
		pctx := ctx
		if hasConstraints(m) || len(m.Hooks) > 0 && r.named(m.Name) {
			octx, ol, err := r.b.locks.lock(ctx, hookOrderLock)
			if err != nil {
				return nil, err
			}
			// Until the save: under both locks (ending if either is
			// lost), commits fenced by the plugin's.
			ctx = context.WithValue(octx, lockKey{}, lockOf(pctx))
			unlockOrder = sync.OnceFunc(ol.release) // once the record is saved (or not)
			defer unlockOrder()
			recs, err := r.orderedView(ctx)
			if err != nil {
				return nil, err
			}
			if err := checkChainOrder(recs, m); err != nil {
				return nil, err
			}
		}
		rec.Manifest = m
		rec.Version = m.Version
		rec.RegisteredAt = now
		if err := r.ensureConsumer(ctx, m, exists && prev.Consumer != ""); err != nil {
			return nil, err
		}
		rec.Consumer = ""
		if m.Events != nil {
			rec.Consumer = schemas.ConsumerName(m.Name)
		}
		from := rec.State
		rec.State = schemas.StateRegistered
		rec.LastError = nil
		prevVersion := ""
		if exists && prev.Version != m.Version {
			prevVersion = prev.Version
		}
		evs := []*event.Event{r.event(schemas.TypePluginRegistered, m.Name,
			schemas.PluginRegisteredData{Name: m.Name, Version: m.Version, PreviousVersion: prevVersion})}
		if from != rec.State {
			r.b.metrics.stateChanges.WithLabelValues(string(rec.State)).Inc()
			evs = append(evs, r.stateEvent(rec.PluginRecord, from, nil))
		}
		if err := r.save(ctx, &rec, compact(evs)...); err != nil {
			return nil, err
		}
		unlockOrder()
		ctx = pctx
		r.b.log.Info().Str(logging.FieldPlugin, m.Name).Str(logging.FieldVersion, m.Version).Str("previous_version", prevVersion).Msg("plugin registered")
	}
	rec = r.lifecycle(ctx, rec, req.Config)
	return &schemas.RegisterResponse{Plugin: rec.PluginRecord, Changed: true}, nil
}

// normalize makes manifests comparable after a JSON round trip.
func normalize(m schemas.Manifest) schemas.Manifest {
	b, _ := json.Marshal(m)
	var out schemas.Manifest
	_ = json.Unmarshal(b, &out)
	if len(out.ConfigSchema) > 0 {
		var v any
		_ = json.Unmarshal(out.ConfigSchema, &v)
		out.ConfigSchema, _ = json.Marshal(v)
	}
	return out
}

// checkManifest applies the rules a schema cannot express (config schema
// compiles, hook timeouts, duplicate hooks and actions, the start position).
func checkManifest(m schemas.Manifest) error {
	return m.Validate()
}

// lifecycle runs init → config → verify and leaves the plugin ACTIVE, or in
// ERROR with the error kept. The caller holds the plugin's lock.
func (r *registry) lifecycle(ctx context.Context, rec pluginRec, initial map[string]any) pluginRec {
	name := rec.Name
	rec = r.transition(ctx, rec, schemas.StateInitializing, nil)
	var initResp schemas.InitResponse
	if err := r.call(ctx, name, schemas.VerbInit, schemas.InitRequest{Name: name, Version: rec.Version}, &initResp); err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	rec.Metadata = initResp.Metadata

	rec = r.transition(ctx, rec, schemas.StateConfiguring, nil)
	cfg, cfgRev, err := r.currentConfig(ctx, name)
	if err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	if cfg == nil {
		cfg = initial
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	if err := r.applyConfig(ctx, rec.PluginRecord, cfg, cfgRev); err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	rec.Config = cfg

	return r.verify(ctx, rec)
}

// verify runs the verify step and leaves the plugin ACTIVE or in ERROR.
func (r *registry) verify(ctx context.Context, rec pluginRec) pluginRec {
	rec = r.transition(ctx, rec, schemas.StateVerifying, nil)
	var vr schemas.VerifyResponse
	if err := r.call(ctx, rec.Name, schemas.VerbVerify, schemas.VerifyRequest{}, &vr); err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	if !vr.Ready {
		msg := vr.Message
		if msg == "" {
			msg = "plugin reported it is not ready"
		}
		return r.transition(ctx, rec, schemas.StateError, &schemas.Error{Code: schemas.CodePluginError, Plugin: rec.Name,
			Message: "verify failed: " + msg})
	}
	return r.transition(ctx, rec, schemas.StateActive, nil)
}

// applyConfig enforces required params and the config schema, sends the
// config to the plugin and, once accepted, stores it in the configs bucket,
// where every running instance watches it: compare-and-set on the
// revision the caller read (0: there was none).
func (r *registry) applyConfig(ctx context.Context, rec schemas.PluginRecord, cfg map[string]any, rev uint64) error {
	if err := checkConfig(rec.Manifest, cfg); err != nil {
		return err
	}
	if err := r.call(ctx, rec.Name, schemas.VerbConfig, schemas.ConfigRequest{Config: cfg}, nil); err != nil {
		return err
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config of %s: %w", rec.Name, err)
	}
	if err := checkLock(ctx); err != nil {
		return err
	}
	if _, err := r.b.writeKV(ctx, r.b.st.configs, rec.Name, body, rev, rev != 0, 0); err != nil {
		if errors.Is(err, errConflict) {
			e := schemas.Errorf(schemas.CodeConflict, "config", "the config of %s changed while this one was applied: read it again and retry", rec.Name)
			e.Details = map[string]any{schemas.DetailPlugin: rec.Name}
			return e
		}
		return fmt.Errorf("store config of %s: %w", rec.Name, err)
	}
	return nil
}

// checkConfig enforces the manifest's required params and config schema.
func checkConfig(m schemas.Manifest, cfg map[string]any) error {
	for _, p := range m.RequiredParams {
		if v, ok := cfg[p]; !ok || v == nil || v == "" {
			e := schemas.Errorf(schemas.CodeMissingParam, "config."+p, "plugin %s needs config param %q", m.Name, p)
			e.Details = map[string]any{schemas.DetailParam: p, schemas.DetailPlugin: m.Name}
			return e
		}
	}
	if len(m.ConfigSchema) > 0 {
		cs, err := schemas.CompileConfigSchema(m.ConfigSchema)
		if err != nil {
			return err
		}
		if err := cs.Validate(cfg); err != nil {
			return err
		}
	}
	return nil
}

// currentConfig returns the stored config of a plugin (nil when none is
// stored) and its revision (0 then).
func (r *registry) currentConfig(ctx context.Context, name string) (map[string]any, uint64, error) {
	e, err := r.b.st.configs.Get(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("read config of %s: %w", name, storeError(err))
	}
	var cfg map[string]any
	if err := json.Unmarshal(e.Value(), &cfg); err != nil {
		return nil, 0, fmt.Errorf("decode config of %s: %w", name, err)
	}
	return cfg, e.Revision(), nil
}

// configure merges set over the plugin's config, validates it and pushes it
// through config → verify; an empty set just reads.
func (r *registry) configure(ctx context.Context, req *schemas.PluginConfigRequest) (schemas.PluginRecord, error) {
	rec, err := r.configureLocked(ctx, req)
	return rec.PluginRecord, err
}

func (r *registry) configureLocked(ctx context.Context, req *schemas.PluginConfigRequest) (pluginRec, error) {
	ctx, unlock, err := r.lock(ctx, req.Name)
	if err != nil {
		return pluginRec{}, err
	}
	defer unlock()
	rec, err := r.get(ctx, req.Name)
	if err != nil {
		return rec, err
	}
	cur, cfgRev, err := r.currentConfig(ctx, req.Name)
	if err != nil {
		return rec, err
	}
	if len(req.Set) == 0 {
		if cur != nil {
			rec.Config = cur
		}
		return rec, nil
	}
	next := map[string]any{}
	for k, v := range cur {
		next[k] = v
	}
	for k, v := range req.Set {
		if v == nil {
			delete(next, k)
			continue
		}
		next[k] = v
	}
	if err := checkConfig(rec.Manifest, next); err != nil {
		return rec, err
	}
	if rec.State == schemas.StateStale {
		return rec, schemas.Errorf(schemas.CodeNotActive, "name", "plugin %s has no running instance (STALE): start it, then set its config", rec.Name)
	}
	if rec.State == schemas.StateActive {
		// An ACTIVE plugin stays ACTIVE (and in its hook chains) while its
		// config changes. A config the plugin refuses is not stored: the
		// plugin keeps running on its current one.
		if err := r.applyConfig(ctx, rec.PluginRecord, next, cfgRev); err != nil {
			return rec, err
		}
		rec.Config = next
		var vr schemas.VerifyResponse
		if err := r.call(ctx, rec.Name, schemas.VerbVerify, schemas.VerifyRequest{}, &vr); err != nil || !vr.Ready {
			if err == nil {
				err = &schemas.Error{Code: schemas.CodePluginError, Plugin: rec.Name, Message: "verify failed: " + vr.Message}
			}
			rec = r.transition(ctx, rec, schemas.StateError, err)
			return rec, rec.LastError
		}
		if err := r.save(ctx, &rec); err != nil {
			return rec, err
		}
		return rec, nil
	}
	rec = r.transition(ctx, rec, schemas.StateConfiguring, nil)
	if err := r.applyConfig(ctx, rec.PluginRecord, next, cfgRev); err != nil {
		r.transition(ctx, rec, schemas.StateError, err)
		return rec, err
	}
	rec.Config = next
	if rec.Metadata == nil {
		var initResp schemas.InitResponse
		if err := r.call(ctx, rec.Name, schemas.VerbInit, schemas.InitRequest{Name: rec.Name, Version: rec.Version}, &initResp); err == nil {
			rec.Metadata = initResp.Metadata
		}
	}
	rec = r.verify(ctx, rec)
	if rec.State != schemas.StateActive {
		return rec, rec.LastError
	}
	return rec, nil
}

// transition moves rec to state "to", keeping err as its last error when
// moving to ERROR or STALE, stores it and publishes state_changed.
func (r *registry) transition(ctx context.Context, rec pluginRec, to schemas.PluginState, err error) pluginRec {
	from := rec.State
	rec.State = to
	if err != nil {
		e := schemas.AsError(err)
		if e.Plugin == "" && e.Code != schemas.CodeMissingParam && e.Code != schemas.CodeInvalidField {
			e.Plugin = rec.Name
		}
		rec.LastError = e
	} else if to == schemas.StateActive {
		rec.LastError = nil
	}
	var evs []*event.Event
	if from != to {
		evs = compact([]*event.Event{r.stateEvent(rec.PluginRecord, from, rec.LastError)})
	}
	if serr := r.save(ctx, &rec, evs...); serr != nil {
		r.b.log.Error().Err(serr).Str(logging.FieldPlugin, rec.Name).Msg("store plugin state")
	}
	if from != to {
		r.b.metrics.stateChanges.WithLabelValues(string(to)).Inc()
		// The steps a lifecycle run passes through are debug lines (every
		// transition is an event anyway); where it ends is info.
		ev := r.b.log.Info()
		if transient(to) {
			ev = r.b.log.Debug()
		}
		if to == schemas.StateError || to == schemas.StateStale {
			ev = r.b.log.Warn()
			if rec.LastError != nil {
				ev = ev.Err(rec.LastError)
			}
		}
		ev.Str(logging.FieldPlugin, rec.Name).Str(logging.FieldVersion, rec.Version).Str(logging.FieldFrom, string(from)).Str(logging.FieldState, string(to)).Msg("plugin state changed")
	}
	return rec
}

func (r *registry) stateEvent(rec schemas.PluginRecord, from schemas.PluginState, err *schemas.Error) *event.Event {
	if from == "" {
		from = schemas.StateRegistered
	}
	data := schemas.PluginStateChangedData{Name: rec.Name, Version: rec.Version, From: from, To: rec.State}
	if rec.State == schemas.StateError || rec.State == schemas.StateStale {
		data.Error = err
	}
	return r.event(schemas.TypePluginStateChanged, rec.Name, data)
}

// compact drops the events that could not be built.
func compact(evs []*event.Event) []*event.Event {
	out := evs[:0]
	for _, e := range evs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

func (r *registry) publish(ctx context.Context, eventType string, data any, opts ...EventOption) {
	if _, err := r.b.publishLater(ctx, eventType, data, opts...); err != nil {
		r.b.log.Error().Err(err).Str(logging.FieldEventType, eventType).Msg("publish event")
	}
}

// call sends a control request to one instance of a plugin (queue group).
func (r *registry) call(ctx context.Context, plugin, verb string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, r.b.cfg.PluginTimeout)
	defer cancel()
	start := time.Now()
	err := r.b.callLimited(ctx, plugin, func(ctx context.Context) error {
		return wire.Call(ctx, r.b.nc, wire.PluginSubject(r.b.cfg.Prefix, plugin, verb), req, resp)
	})
	result := "ok"
	if err != nil {
		e := schemas.AsError(err)
		result = e.Code
		if e.Plugin == "" {
			e.Plugin = plugin
		}
		e.Message = verb + ": " + e.Message
		err = e
	}
	r.b.metrics.pluginCalls.WithLabelValues(verb, metricCode(result)).Observe(time.Since(start).Seconds())
	return err
}

// ensureConsumer creates or updates the plugin's durable consumer from its
// manifest, or deletes it when the manifest no longer consumes events and
// had says the plugin's record names one. An existing consumer keeps its
// position, so a new version carries on where the old one stopped.
//
// A plugin without a record, or whose record names no consumer, has none
// to delete, except after a broker stopped between creating a consumer and
// storing the record that names it: that consumer stays until the plugin
// consumes events again (it then carries on with it) or is unregistered.
func (r *registry) ensureConsumer(ctx context.Context, m schemas.Manifest, had bool) error {
	name := schemas.ConsumerName(m.Name)
	if m.Events == nil || len(m.Events.Types) == 0 {
		if !had {
			return nil
		}
		err := r.b.js.DeleteConsumer(ctx, schemas.StreamEvents, name)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
		return nil
	}
	cc := ConsumerConfig(r.b.cfg.Prefix, m)
	if r.b.cfg.AckSampling == AckSamplingOff {
		cc.SampleFrequency = ""
	}
	if existing, err := r.b.js.Consumer(ctx, schemas.StreamEvents, name); err == nil {
		info := existing.CachedInfo()
		cc.DeliverPolicy = info.Config.DeliverPolicy
		cc.OptStartTime = info.Config.OptStartTime
		cc.OptStartSeq = info.Config.OptStartSeq
	}
	if _, err := r.b.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, cc); err != nil {
		return schemas.Errorf(schemas.CodeInvalidField, "manifest.events", "cannot create consumer %s: %v", name, err)
	}
	return nil
}

// ConsumerConfig returns the durable consumer a manifest asks for: server-side
// subject filters for its event types and its delivery settings.
func ConsumerConfig(prefix string, m schemas.Manifest) jetstream.ConsumerConfig {
	ev := m.Events
	cc := jetstream.ConsumerConfig{
		Durable:       schemas.ConsumerName(m.Name),
		Description:   fmt.Sprintf("plugbus plugin %s %s", m.Name, m.Version),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    5,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		MaxAckPending: 1000,
		// The server reports every ack (plugbus_consumer_acked_total).
		SampleFrequency: ackSampleFrequency,
	}
	seen := map[string]bool{}
	for _, t := range ev.Types {
		s := wire.EventSubject(prefix, t)
		if !seen[s] {
			seen[s] = true
			cc.FilterSubjects = append(cc.FilterSubjects, s)
		}
	}
	withRedelivery(prefix, &cc)
	if ev.AckWait > 0 {
		cc.AckWait = ev.AckWait.D()
	}
	if ev.MaxDeliver != 0 {
		cc.MaxDeliver = ev.MaxDeliver
	}
	switch sp := ev.StartPoint(time.Now()); {
	case sp.All:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	case !sp.Time.IsZero():
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &sp.Time
	}
	return cc
}

// unregister removes a plugin's record, config and durable consumer. It is
// refused while an instance still answers, unless req.Force.
func (r *registry) unregister(ctx context.Context, req *schemas.PluginUnregisterRequest) (schemas.PluginRecord, error) {
	ctx, unlock, err := r.lock(ctx, req.Name)
	if err != nil {
		return schemas.PluginRecord{}, err
	}
	defer unlock()
	stored, err := r.get(ctx, req.Name)
	rec := stored.PluginRecord
	if err != nil {
		return rec, err
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	_, perr := r.b.nc.RequestWithContext(pctx, wire.PingSubject(wire.PluginService(req.Name)), nil)
	cancel()
	alive := perr == nil
	if alive && !req.Force {
		e := schemas.Errorf(schemas.CodeConflict, "name", "plugin %s still has a running instance", req.Name)
		e.Details = map[string]any{schemas.DetailPlugin: req.Name, schemas.DetailRunning: true}
		return rec, e
	}
	if err := r.b.js.DeleteConsumer(ctx, schemas.StreamEvents, schemas.ConsumerName(req.Name)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return rec, fmt.Errorf("delete consumer of %s: %w", req.Name, err)
	}
	if err := deleteConsumer(ctx, r.b.js, schemas.ReplayConsumerName(req.Name)); err != nil {
		return rec, err
	}
	if err := r.b.st.configs.Purge(ctx, req.Name); err != nil && !isNotFound(err) {
		return rec, fmt.Errorf("delete config of %s: %w", req.Name, err)
	}
	// The record goes with its unregistered event: written with the event
	// pending and purged once it is stored.
	ev := r.event(schemas.TypePluginUnregistered, rec.Name, schemas.PluginUnregisteredData{Name: rec.Name, Version: rec.Version, Forced: alive})
	rev, err := r.b.putWithEvents(ctx, r.b.st.plugins, req.Name, rec, stored.rev, outboxPurge, compact([]*event.Event{ev})...)
	if errors.Is(err, errConflict) {
		e := schemas.Errorf(schemas.CodeConflict, "name", "plugin %s changed while it was being unregistered: nothing was removed; retry", req.Name)
		e.Details = map[string]any{schemas.DetailPlugin: req.Name}
		return rec, e
	}
	if err != nil {
		return rec, fmt.Errorf("delete plugin record %s: %w", req.Name, err)
	}
	r.remove(req.Name, rev)
	r.b.log.Info().Str(logging.FieldPlugin, rec.Name).Str(logging.FieldVersion, rec.Version).Bool("forced", alive).Msg("plugin unregistered")
	return rec, nil
}

// heartbeat marks a plugin STALE when none of its instances answers a micro
// PING, and brings a STALE plugin back through its lifecycle when one does.
// A round pings heartbeatConcurrency plugins at a time and takes a
// plugin's lock only when its answer disagrees with its cached state, so a
// round over plugins that are as they should be writes nothing.
func (r *registry) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.b.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sem := make(chan struct{}, heartbeatConcurrency)
		var wg sync.WaitGroup
		for _, rec := range r.cached() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Go(func() {
				defer func() { <-sem }()
				r.checkAlive(ctx, rec.Name, rec.State)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		r.rounds.Add(1)
	}
}

// heartbeatConcurrency is how many plugins a heartbeat round pings at once.
const heartbeatConcurrency = 16

// staleAfterMisses is how many heartbeat pings in a row must time out
// before a plugin is marked STALE. A ping that finds no responder at all
// (no instance connected) marks it STALE at once; a timeout may only be a
// busy instance or a loaded host, and one late answer must not send a
// healthy plugin through its lifecycle again.
const staleAfterMisses = 3

// missed records the outcome of one ping of plugin name and says whether
// the plugin counts as gone: at once for no responders, after
// staleAfterMisses timeouts in a row otherwise.
func (r *registry) missed(name string, err error) bool {
	r.missMu.Lock()
	defer r.missMu.Unlock()
	if err == nil {
		delete(r.misses, name)
		return false
	}
	if errors.Is(err, nats.ErrNoResponders) {
		delete(r.misses, name)
		return true
	}
	if r.misses == nil {
		r.misses = map[string]int{}
	}
	r.misses[name]++
	if r.misses[name] < staleAfterMisses {
		return false
	}
	delete(r.misses, name)
	return true
}

// checkAlive pings plugin name, whose cached state is cached, and settles
// its state under its lock when the answer calls for a change.
func (r *registry) checkAlive(ctx context.Context, name string, cached schemas.PluginState) {
	pctx, cancel := context.WithTimeout(ctx, r.b.cfg.HeartbeatInterval)
	_, err := r.b.nc.RequestWithContext(pctx, wire.PingSubject(wire.PluginService(name)), nil)
	cancel()
	if ctx.Err() != nil {
		return
	}
	gone := r.missed(name, err)
	if err != nil && !gone {
		// A late answer: the next rounds decide.
		return
	}
	alive := !gone
	if alive == (cached != schemas.StateStale) {
		// As it should be (or a change the next round sees once the
		// cache has it).
		return
	}
	// Another broker's lifecycle run (a registration) may hold the
	// plugin: this round leaves it be rather than hold up the others.
	wctx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	giveUp := time.AfterFunc(r.b.cfg.HeartbeatInterval, cancelWait)
	ctx, unlock, lerr := r.lock(wctx, name)
	// The bound is on the wait only, not on the lifecycle run after it.
	if !giveUp.Stop() || lerr != nil {
		unlock()
		return
	}
	defer unlock()
	rec, gerr := r.get(ctx, name)
	if gerr != nil {
		return
	}
	switch {
	case !alive && rec.State != schemas.StateStale:
		msg := fmt.Sprintf("no instance answers (%d heartbeat pings in a row timed out): start the plugin (or check its logs)", staleAfterMisses)
		if errors.Is(err, nats.ErrNoResponders) {
			msg = "no instance is running: start the plugin (or check its logs)"
		}
		r.transition(ctx, rec, schemas.StateStale, &schemas.Error{Code: schemas.CodeNoResponders, Plugin: name, Message: msg})
	case alive && rec.State == schemas.StateStale:
		r.lifecycle(ctx, rec, nil)
	}
}
