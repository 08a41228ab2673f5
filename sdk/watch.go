package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// configSource says where a configuration comes from: the config verb
// (revision 0), or the config bucket at a revision.
type configSource struct {
	// revision is the bucket revision of a pushed config, 0 for the verb.
	revision uint64
	// floor, for the verb, is the bucket's revision of the key when the
	// verb arrived: the broker stores the config after this instance
	// accepts it, so pushed values at or below floor are older.
	floor uint64
}

// applyConfig runs the config handler with cfg and, when it accepts, makes
// cfg the current configuration. A pushed change (src.revision > 0, seen
// in the config bucket) is skipped when it equals the configuration last
// applied (typically because this instance took the config verb for it),
// and when it is older than a config the verb brought (a watch that lags
// behind the verb must not bring a previous config back).
func (p *Plugin) applyConfig(ctx context.Context, cfg map[string]any, src configSource) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	pushed := src.revision > 0
	c := cloneConfig(cfg)
	canon, err := json.Marshal(c) // map keys are sorted: canonical
	if err != nil {
		return schemas.Errorf(schemas.CodeBadRequest, "config", "config is not JSON-encodable: %v", err)
	}
	if pushed && p.applied != nil && (bytes.Equal(canon, p.applied) || src.revision <= p.verbFloor) {
		return nil
	}
	p.mu.RLock()
	h := p.onConfig
	p.mu.RUnlock()
	_, err = p.invoke(ctx, &Call{Kind: KindConfig, Name: schemas.VerbConfig, Request: cloneConfig(c)}, func(ctx context.Context, call *Call) (any, error) {
		if h == nil {
			return nil, nil
		}
		return nil, h(ctx, call.Request.(Config))
	})
	if err != nil {
		p.stats.configsRejected.Add(1)
		return err
	}
	p.mu.Lock()
	p.cfg = c
	p.mu.Unlock()
	p.applied = canon
	if !pushed {
		p.verbFloor = max(p.verbFloor, src.floor)
	}
	p.stats.configsApplied.Add(1)
	from := "config verb"
	if pushed {
		from = "config bucket"
	}
	p.Logger().Info().Str("source", from).Int("keys", len(c)).Msg("config applied")
	return nil
}

func retryForever(initial, max time.Duration) []backoff.RetryOption {
	return []backoff.RetryOption{
		backoff.WithBackOff(&backoff.ExponentialBackOff{
			InitialInterval: initial, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: max,
		}),
		backoff.WithMaxElapsedTime(0),
	}
}

// watchKey watches one key of a KV bucket until ctx ends, calling onPut for
// every value (current value first) and onCaughtUp (when set) each time the
// watch has delivered the current value (once per watch: again after a
// restart). It opens the bucket and restarts the watch with backoff when
// either fails.
func (p *Plugin) watchKey(ctx context.Context, js jetstream.JetStream, bucket, key string, onCaughtUp func(), onPut func(jetstream.KeyValueEntry)) {
	log := p.Logger().With().Str("bucket", bucket).Logger()
	for ctx.Err() == nil {
		w, err := backoff.Retry(ctx, func() (jetstream.KeyWatcher, error) {
			kv, err := js.KeyValue(ctx, bucket)
			if err != nil {
				log.Debug().Err(err).Msg("waiting for bucket")
				return nil, err
			}
			return kv.Watch(ctx, key)
		}, retryForever(100*time.Millisecond, 5*time.Second)...)
		if err != nil {
			return // ctx ended
		}
		for entry := range w.Updates() {
			if entry == nil {
				if onCaughtUp != nil {
					onCaughtUp()
				}
				continue
			}
			if entry.Key() != key {
				// Only this key's values: never another's, whatever a
				// tampered watch delivers.
				log.Warn().Str("key", entry.Key()).Msg("watch delivered another key; ignoring it")
				continue
			}
			if entry.Operation() == jetstream.KeyValuePut {
				onPut(entry)
			}
		}
		_ = w.Stop()
		if ctx.Err() == nil {
			log.Warn().Msg("watch ended; restarting it")
		}
	}
}

// watchConfig applies the configuration stored in the config bucket: the
// current value first, then every change. synced is closed once the watch
// has caught up, the current value having gone through the config handler
// (accepted or not). p.configured is closed once the config handler has
// accepted the stored configuration (at once when none is stored): event
// consumption waits for it, so no event handler ever runs on an empty or
// previous configuration. When the handler rejects the stored config
// before any was applied, watchConfig tries again with backoff, reading
// the stored value anew each time, until one is accepted (here, or through
// the config verb).
func (p *Plugin) watchConfig(ctx context.Context, js jetstream.JetStream, synced chan<- struct{}) {
	caughtUp := false
	pending := false // the last stored value seen was rejected
	p.watchKey(ctx, js, schemas.BucketConfigs, p.manifest.Name, func() {
		if caughtUp {
			return
		}
		caughtUp = true
		if !pending {
			p.markConfigured()
		}
		close(synced)
		if pending {
			p.retryStoredConfig(ctx, js)
		}
	}, func(e jetstream.KeyValueEntry) {
		if p.applyStoredConfig(e.Value(), e.Revision()) != nil {
			pending = !p.isConfigured()
			return
		}
		pending = false
		if caughtUp {
			p.markConfigured()
		}
	})
}

// applyStoredConfig applies a value of the config bucket.
func (p *Plugin) applyStoredConfig(value []byte, revision uint64) error {
	var cfg map[string]any
	if err := json.Unmarshal(value, &cfg); err != nil {
		p.Logger().Error().Err(err).Uint64("revision", revision).Msg("stored config is not a JSON object; ignoring it")
		return err
	}
	hctx, cancel := p.handlerContext(p.base)
	defer cancel()
	if err := p.applyConfig(hctx, cfg, configSource{revision: revision}); err != nil {
		ev := p.Logger().Error().Err(err).Uint64("revision", revision)
		if p.isConfigured() {
			ev.Msg("config handler rejected a pushed config; keeping the previous one")
		} else {
			ev.Msg("config handler rejected the stored config; events wait until a config is applied")
		}
		return err
	}
	return nil
}

// storedConfigRevision returns the revision of the plugin's key in the
// config bucket (0 when none is stored or it cannot be read).
func (p *Plugin) storedConfigRevision(ctx context.Context) uint64 {
	p.mu.RLock()
	js := p.js
	p.mu.RUnlock()
	if js == nil {
		return 0
	}
	kv, err := js.KeyValue(ctx, schemas.BucketConfigs)
	if err != nil {
		return 0
	}
	e, err := kv.Get(ctx, p.manifest.Name)
	if err != nil {
		return 0
	}
	return e.Revision()
}

// retryStoredConfig applies the stored config, read anew each time, with
// backoff until the config handler accepts it (or a config verb applied
// it meanwhile), then opens the event gate. It returns when ctx ends.
func (p *Plugin) retryStoredConfig(ctx context.Context, js jetstream.JetStream) {
	p.Logger().Warn().Msg("config handler rejected the stored config; events wait, retrying it")
	_, _ = backoff.Retry(ctx, func() (struct{}, error) {
		if p.isConfigured() {
			return struct{}{}, nil
		}
		kv, err := js.KeyValue(ctx, schemas.BucketConfigs)
		if err != nil {
			return struct{}{}, err
		}
		e, err := kv.Get(ctx, p.manifest.Name)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			// Nothing stored any more: nothing to wait for.
		case err != nil:
			return struct{}{}, err
		default:
			if err := p.applyStoredConfig(e.Value(), e.Revision()); err != nil {
				return struct{}{}, err
			}
		}
		p.markConfigured()
		return struct{}{}, nil
	}, retryForever(time.Second, 30*time.Second)...)
}

// watchRecord follows the plugin's registry record: it keeps State current,
// starts event consumption once ACTIVE, reads the consumer's delivery
// settings again after a new registration, and registers again when the
// broker marks the plugin STALE while this instance is alive.
func (p *Plugin) watchRecord(ctx context.Context, js jetstream.JetStream) {
	p.watchKey(ctx, js, schemas.BucketPlugins, p.manifest.Name, nil, func(e jetstream.KeyValueEntry) {
		var rec schemas.PluginRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			p.Logger().Error().Err(err).Msg("plugin record is not valid JSON; ignoring it")
			return
		}
		if p.newRegistration(rec) {
			// Another version may have changed the consumer's delivery
			// settings (the broker updates the consumer first).
			p.requestSettingsRefresh()
		}
		prev := p.State()
		state := p.observeRecord(rec)
		if state != prev {
			ev := p.Logger().Info().Str(FieldState, string(state))
			if rec.LastError != nil {
				ev = ev.Str(FieldReason, rec.LastError.Error())
			}
			ev.Msg("plugin state changed")
		}
		if rec.State == schemas.StateStale {
			p.Logger().Warn().Msg("broker marked the plugin STALE; registering again")
			p.requestReregister()
		}
	})
}

// newRegistration reports whether rec is of another registration (version
// or registration time) than the record seen before it.
func (p *Plugin) newRegistration(rec schemas.PluginRecord) bool {
	key := rec.Version + " " + rec.RegisteredAt.UTC().Format(time.RFC3339Nano)
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := p.registration != "" && p.registration != key
	p.registration = key
	return changed
}
