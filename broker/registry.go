package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
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
// reads on the hot path (action routing); writes always go to the bucket.
type registry struct {
	b *Broker

	mu    sync.RWMutex
	cache map[string]schemas.PluginRecord
	// snap is the read view; nil when the cache changed since it was built.
	snap atomic.Pointer[snapshot]
	// version counts cache changes (under mu).
	version uint64

	locks keyedMutex
	// orderMu serialises the registrations whose hook ordering
	// constraints involve each other, from the cycle check to the save,
	// so two of them cannot make a cycle together (chainorder.go).
	orderMu sync.Mutex
}

func newRegistry(b *Broker) *registry {
	return &registry{b: b, cache: map[string]schemas.PluginRecord{}}
}

// lock serialises lifecycle work on one plugin within this broker.
func (r *registry) lock(name string) func() { return r.locks.lock(name) }

// load reads every record into the cache.
func (r *registry) load(ctx context.Context) error {
	keys, err := r.b.st.plugins.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list plugins: %w", err)
	}
	for k := range keys.Keys() {
		rec, _, err := r.get(ctx, k)
		if err != nil {
			continue
		}
		r.put(rec)
	}
	return nil
}

// watch keeps the cache in step with the bucket, including writes made by
// other broker replicas.
func (r *registry) watch(ctx context.Context) {
	w, err := r.b.st.plugins.WatchAll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.b.log.Error().Err(err).Msg("watch plugin registry")
		}
		return
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				r.mu.Lock()
				delete(r.cache, e.Key())
				r.invalidate()
				r.mu.Unlock()
				r.b.metrics.pluginGone(e.Key())
				continue
			}
			var rec schemas.PluginRecord
			if err := json.Unmarshal(e.Value(), &rec); err == nil {
				r.put(rec)
			}
		}
	}
}

func (r *registry) put(rec schemas.PluginRecord) {
	r.mu.Lock()
	if cur, ok := r.cache[rec.Name]; ok && cur.UpdatedAt.After(rec.UpdatedAt) {
		// An older write seen late through the watch.
		r.mu.Unlock()
		return
	}
	r.cache[rec.Name] = rec
	r.invalidate()
	r.mu.Unlock()
	r.b.metrics.pluginSeen(rec)
}

// snapshot is a read-only view of the registry, rebuilt lazily after
// changes: records sorted by name, the hook chains in run order and an
// index of who offers which action.
type snapshot struct {
	records []schemas.PluginRecord
	chains  map[string][]schemas.HookStep
	// actions maps "model/command" to indexes into records.
	actions map[string][]int
}

// invalidate marks the snapshot stale; r.mu is held. The next reader
// rebuilds it, so a burst of registry writes costs one rebuild.
func (r *registry) invalidate() {
	r.version++
	r.snap.Store(nil)
}

// view returns the current snapshot, rebuilding it if the registry changed.
func (r *registry) view() *snapshot {
	if s := r.snap.Load(); s != nil {
		return s
	}
	r.mu.RLock()
	version := r.version
	recs := make([]schemas.PluginRecord, 0, len(r.cache))
	for _, rec := range r.cache {
		recs = append(recs, rec)
	}
	r.mu.RUnlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	s := &snapshot{records: recs, chains: computeChains(recs), actions: map[string][]int{}}
	for i, rec := range recs {
		for _, a := range rec.Manifest.Actions {
			k := a.Model + "/" + a.Command
			s.actions[k] = append(s.actions[k], i)
		}
	}
	// Publish it unless a write made it stale meanwhile (then the next
	// reader rebuilds again).
	r.mu.RLock()
	if r.version == version {
		r.snap.CompareAndSwap(nil, s)
	}
	r.mu.RUnlock()
	return s
}

// chains returns the hook chains as they will run.
func (r *registry) chains() map[string][]schemas.HookStep { return r.view().chains }

// state returns a plugin's cached state ("" when unknown).
func (r *registry) state(name string) schemas.PluginState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cache[name].State
}

// cached returns the cached records sorted by name. The slice is shared:
// callers must not modify it.
func (r *registry) cached() []schemas.PluginRecord { return r.view().records }

// get reads one record from the bucket.
func (r *registry) get(ctx context.Context, name string) (schemas.PluginRecord, uint64, error) {
	var rec schemas.PluginRecord
	e, err := r.b.st.plugins.Get(ctx, name)
	if err != nil {
		if isNotFound(err) {
			e := schemas.Errorf(schemas.CodeNotFound, "name", "plugin %q is not registered", name)
			e.Details = map[string]any{schemas.DetailKind: "plugin", schemas.DetailName: name}
			return rec, 0, e
		}
		return rec, 0, fmt.Errorf("read plugin %q: %w", name, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("decode plugin record %q: %w", name, err)
	}
	return rec, e.Revision(), nil
}

// save stamps rec's update time and writes it to the bucket and the cache.
func (r *registry) save(ctx context.Context, rec *schemas.PluginRecord, events ...*event.Event) error {
	rec.UpdatedAt = time.Now().UTC()
	// The record and its events in one write (commit.go): a crash cannot
	// leave a state change without its event.
	if err := r.b.putWithEvents(ctx, r.b.st.plugins, rec.Name, rec, false, events...); err != nil {
		return fmt.Errorf("store plugin record %q: %w", rec.Name, err)
	}
	r.put(*rec)
	return nil
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
	unlock := r.lock(m.Name)
	defer unlock()

	prev, _, err := r.get(ctx, m.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, schemas.ErrNotFound) {
		return nil, err
	}
	same := exists && prev.Version == m.Version && reflect.DeepEqual(normalize(prev.Manifest), normalize(m))
	if same && prev.State == schemas.StateActive {
		if err := r.ensureConsumer(ctx, m); err != nil {
			return nil, err
		}
		return &schemas.RegisterResponse{Plugin: prev, Changed: false}, nil
	}

	rec := prev
	now := time.Now().UTC()
	if !exists {
		rec = schemas.PluginRecord{Name: m.Name, RegisteredAt: now}
	}
	if !same {
		// A manifest whose ordering constraints would make a cycle in a
		// chain is refused before anything is written.
		unlockOrder := func() {}
		if chainConstrained(r.cached(), m) {
			r.orderMu.Lock()
			unlockOrder = sync.OnceFunc(r.orderMu.Unlock) // once the record is saved (or not)
			defer unlockOrder()
			if err := checkChainOrder(r.cached(), m); err != nil {
				return nil, err
			}
		}
		rec.Manifest = m
		rec.Version = m.Version
		rec.RegisteredAt = now
		if err := r.ensureConsumer(ctx, m); err != nil {
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
			evs = append(evs, r.stateEvent(rec, from, nil))
		}
		if err := r.save(ctx, &rec, compact(evs)...); err != nil {
			return nil, err
		}
		unlockOrder()
		r.b.log.Info().Str(logging.FieldPlugin, m.Name).Str(logging.FieldVersion, m.Version).Str("previous_version", prevVersion).Msg("plugin registered")
	}
	rec = r.lifecycle(ctx, rec, req.Config)
	return &schemas.RegisterResponse{Plugin: rec, Changed: true}, nil
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
func (r *registry) lifecycle(ctx context.Context, rec schemas.PluginRecord, initial map[string]any) schemas.PluginRecord {
	name := rec.Name
	rec = r.transition(ctx, rec, schemas.StateInitializing, nil)
	var initResp schemas.InitResponse
	if err := r.call(ctx, name, schemas.VerbInit, schemas.InitRequest{Name: name, Version: rec.Version}, &initResp); err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	rec.Metadata = initResp.Metadata

	rec = r.transition(ctx, rec, schemas.StateConfiguring, nil)
	cfg, err := r.currentConfig(ctx, name)
	if err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	if cfg == nil {
		cfg = initial
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	if err := r.applyConfig(ctx, rec, cfg); err != nil {
		return r.transition(ctx, rec, schemas.StateError, err)
	}
	rec.Config = cfg

	return r.verify(ctx, rec)
}

// verify runs the verify step and leaves the plugin ACTIVE or in ERROR.
func (r *registry) verify(ctx context.Context, rec schemas.PluginRecord) schemas.PluginRecord {
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
// where every running instance watches it.
func (r *registry) applyConfig(ctx context.Context, rec schemas.PluginRecord, cfg map[string]any) error {
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
	if _, err := r.b.st.configs.Put(ctx, rec.Name, body); err != nil {
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

// currentConfig returns the stored config of a plugin, nil when none is stored.
func (r *registry) currentConfig(ctx context.Context, name string) (map[string]any, error) {
	e, err := r.b.st.configs.Get(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read config of %s: %w", name, err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(e.Value(), &cfg); err != nil {
		return nil, fmt.Errorf("decode config of %s: %w", name, err)
	}
	return cfg, nil
}

// configure merges set over the plugin's config, validates it and pushes it
// through config → verify; an empty set just reads.
func (r *registry) configure(ctx context.Context, req *schemas.PluginConfigRequest) (schemas.PluginRecord, error) {
	unlock := r.lock(req.Name)
	defer unlock()
	rec, _, err := r.get(ctx, req.Name)
	if err != nil {
		return rec, err
	}
	cur, err := r.currentConfig(ctx, req.Name)
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
		if err := r.applyConfig(ctx, rec, next); err != nil {
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
	if err := r.applyConfig(ctx, rec, next); err != nil {
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
func (r *registry) transition(ctx context.Context, rec schemas.PluginRecord, to schemas.PluginState, err error) schemas.PluginRecord {
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
		evs = compact([]*event.Event{r.stateEvent(rec, from, rec.LastError)})
	}
	if serr := r.save(ctx, &rec, evs...); serr != nil {
		r.b.log.Error().Err(serr).Str(logging.FieldPlugin, rec.Name).Msg("store plugin state")
	}
	if from != to {
		r.b.metrics.stateChanges.WithLabelValues(string(to)).Inc()
		ev := r.b.log.Info()
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
// manifest, or deletes it when the manifest no longer consumes events. An
// existing consumer keeps its position, so a new version carries on where
// the old one stopped.
func (r *registry) ensureConsumer(ctx context.Context, m schemas.Manifest) error {
	name := schemas.ConsumerName(m.Name)
	if m.Events == nil || len(m.Events.Types) == 0 {
		err := r.b.js.DeleteConsumer(ctx, schemas.StreamEvents, name)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
		return nil
	}
	cc := ConsumerConfig(r.b.cfg.Prefix, m)
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
	unlock := r.lock(req.Name)
	defer unlock()
	rec, _, err := r.get(ctx, req.Name)
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
	if err := r.b.putWithEvents(ctx, r.b.st.plugins, req.Name, rec, true, compact([]*event.Event{ev})...); err != nil {
		return rec, fmt.Errorf("delete plugin record %s: %w", req.Name, err)
	}
	r.mu.Lock()
	delete(r.cache, req.Name)
	r.invalidate()
	r.mu.Unlock()
	r.b.log.Info().Str(logging.FieldPlugin, rec.Name).Str(logging.FieldVersion, rec.Version).Bool("forced", alive).Msg("plugin unregistered")
	return rec, nil
}

// heartbeat marks a plugin STALE when none of its instances answers a micro
// PING, and brings a STALE plugin back through its lifecycle when one does.
func (r *registry) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.b.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, rec := range r.cached() {
			if ctx.Err() != nil {
				return
			}
			r.checkAlive(ctx, rec.Name)
		}
	}
}

func (r *registry) checkAlive(ctx context.Context, name string) {
	pctx, cancel := context.WithTimeout(ctx, r.b.cfg.HeartbeatInterval)
	_, err := r.b.nc.RequestWithContext(pctx, wire.PingSubject(wire.PluginService(name)), nil)
	cancel()
	alive := err == nil
	if ctx.Err() != nil {
		return
	}
	unlock := r.lock(name)
	defer unlock()
	rec, _, gerr := r.get(ctx, name)
	if gerr != nil {
		return
	}
	switch {
	case !alive && rec.State != schemas.StateStale:
		msg := "no instance answers: start the plugin (or check its logs)"
		if errors.Is(err, nats.ErrNoResponders) {
			msg = "no instance is running: start the plugin (or check its logs)"
		}
		r.transition(ctx, rec, schemas.StateStale, &schemas.Error{Code: schemas.CodeNoResponders, Plugin: name, Message: msg})
	case alive && rec.State == schemas.StateStale:
		r.lifecycle(ctx, rec, nil)
	}
}
