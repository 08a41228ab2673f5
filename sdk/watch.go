package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

// applyConfig runs the config handler with cfg and, when it accepts, makes
// cfg the current configuration. pushed is true for a change seen in the
// config bucket: it is skipped when it equals the configuration last
// applied (typically because this instance took the config verb for it).
func (p *Plugin) applyConfig(ctx context.Context, cfg map[string]any, pushed bool) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	c := cloneConfig(cfg)
	canon, err := json.Marshal(c) // map keys are sorted: canonical
	if err != nil {
		return schemas.Errorf(schemas.CodeBadRequest, "config", "config is not JSON-encodable: %v", err)
	}
	if pushed && p.applied != nil && bytes.Equal(canon, p.applied) {
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
	p.stats.configsApplied.Add(1)
	src := "config verb"
	if pushed {
		src = "config bucket"
	}
	p.Logger().Info().Str("source", src).Int("keys", len(c)).Msg("config applied")
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
// every value (current value first) and closing synced once the current
// value has been handled. It opens the bucket and restarts the watch with
// backoff when either fails.
func (p *Plugin) watchKey(ctx context.Context, js jetstream.JetStream, bucket, key string, synced chan<- struct{}, onPut func(jetstream.KeyValueEntry)) {
	log := p.Logger().With().Str("bucket", bucket).Logger()
	syncedOnce := false
	markSynced := func() {
		if !syncedOnce && synced != nil {
			close(synced)
		}
		syncedOnce = true
	}
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
				markSynced()
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

// watchConfig applies configuration changes stored in the config bucket.
func (p *Plugin) watchConfig(ctx context.Context, js jetstream.JetStream, synced chan<- struct{}) {
	p.watchKey(ctx, js, schemas.BucketConfigs, p.manifest.Name, synced, func(e jetstream.KeyValueEntry) {
		var cfg map[string]any
		if err := json.Unmarshal(e.Value(), &cfg); err != nil {
			p.Logger().Error().Err(err).Uint64("revision", e.Revision()).Msg("stored config is not a JSON object; ignoring it")
			return
		}
		hctx, cancel := p.handlerContext(p.base)
		defer cancel()
		if err := p.applyConfig(hctx, cfg, true); err != nil {
			p.Logger().Error().Err(err).Uint64("revision", e.Revision()).Msg("config handler rejected a pushed config; keeping the previous one")
		}
	})
}

// watchRecord follows the plugin's registry record: it keeps State current,
// starts event consumption once ACTIVE, and registers again when the broker
// marks the plugin STALE while this instance is alive.
func (p *Plugin) watchRecord(ctx context.Context, js jetstream.JetStream) {
	p.watchKey(ctx, js, schemas.BucketPlugins, p.manifest.Name, nil, func(e jetstream.KeyValueEntry) {
		var rec schemas.PluginRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			p.Logger().Error().Err(err).Msg("plugin record is not valid JSON; ignoring it")
			return
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
