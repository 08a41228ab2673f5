package broker

import (
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/plugbus/plugbus/schemas"
)

// The registry's read side (registry.go keeps the cache): what the hot
// paths and the API read, built so that neither a read nor a write costs
// in proportion to the number of registered plugins.
//
//   - Indexes kept up to date on every cache change, under the registry's
//     lock, at a cost proportional to the changed record only: who offers
//     which action, who has a step on which hook point, and which plugins
//     other plugins' ordering constraints name.
//   - Views rebuilt lazily by the first reader after a change: the records
//     sorted by name (plugins.list, the heartbeat, metrics), and each hook
//     point's chain in run order. A chain is rebuilt only when a plugin
//     with a step on it changed, so a burst of registrations elsewhere
//     leaves the chains that run alone.

// regIndex holds the indexes; every method runs under registry.mu.
type regIndex struct {
	// offers maps "model/command" to the plugins offering it, by name.
	offers map[string][]string
	// hooked maps a hook point to the plugins with a step on it.
	hooked map[string]map[string]struct{}
	// named counts, per plugin name, the hook constraints (after/before)
	// of other plugins that name it.
	named map[string]int
}

func newRegIndex() regIndex {
	return regIndex{offers: map[string][]string{}, hooked: map[string]map[string]struct{}{}, named: map[string]int{}}
}

func actionKey(model, command string) string { return model + "/" + command }

// actionKeys returns a manifest's action keys, sorted and without repeats.
func actionKeys(m *schemas.Manifest) []string {
	if m == nil || len(m.Actions) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m.Actions))
	for _, a := range m.Actions {
		keys = append(keys, actionKey(a.Model, a.Command))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// change replaces old (nil: none) by cur (nil: removed) for plugin name
// and returns the hook points whose chains it touches.
func (x *regIndex) change(name string, old, cur *schemas.PluginRecord) []string {
	var om, cm *schemas.Manifest
	if old != nil {
		om = &old.Manifest
	}
	if cur != nil {
		cm = &cur.Manifest
	}
	if ok, ck := actionKeys(om), actionKeys(cm); !slices.Equal(ok, ck) {
		for _, k := range ok {
			if i, found := slices.BinarySearch(x.offers[k], name); found {
				if x.offers[k] = slices.Delete(x.offers[k], i, i+1); len(x.offers[k]) == 0 {
					delete(x.offers, k)
				}
			}
		}
		for _, k := range ck {
			if i, found := slices.BinarySearch(x.offers[k], name); !found {
				x.offers[k] = slices.Insert(x.offers[k], i, name)
			}
		}
	}
	var touched []string
	if om != nil {
		for _, h := range om.Hooks {
			delete(x.hooked[h.Hook], name)
			if len(x.hooked[h.Hook]) == 0 {
				delete(x.hooked, h.Hook)
			}
			touched = append(touched, h.Hook)
			x.count(name, h, -1)
		}
	}
	if cm != nil {
		for _, h := range cm.Hooks {
			if x.hooked[h.Hook] == nil {
				x.hooked[h.Hook] = map[string]struct{}{}
			}
			x.hooked[h.Hook][name] = struct{}{}
			touched = append(touched, h.Hook)
			x.count(name, h, 1)
		}
	}
	return touched
}

// count adds d to the counts of the plugins h's constraints name.
func (x *regIndex) count(name string, h schemas.HookSpec, d int) {
	for _, list := range [][]string{h.After, h.Before} {
		for _, p := range list {
			if p == name {
				continue
			}
			if x.named[p] += d; x.named[p] <= 0 {
				delete(x.named, p)
			}
		}
	}
}

// regViews are the lazily rebuilt views.
type regViews struct {
	// records is the sorted records, nil when stale.
	records atomic.Pointer[[]schemas.PluginRecord]
	// recordsVersion counts record changes (under registry.mu).
	recordsVersion uint64
	// chains is every chain in run order, nil while a hook point's chain
	// is stale.
	chains atomic.Pointer[map[string][]schemas.HookStep]
	// built is the last chains built and stale the hook points changed
	// since (under registry.mu); chainsVersion counts those changes.
	built         map[string][]schemas.HookStep
	stale         map[string]bool
	chainsVersion uint64
}

// changed records a change of plugin name from old to cur in the indexes
// and marks the views stale; r.mu is held.
func (r *registry) changed(name string, old, cur *schemas.PluginRecord) {
	r.views.recordsVersion++
	r.views.records.Store(nil)
	touched := r.index.change(name, old, cur)
	if len(touched) == 0 {
		return
	}
	if r.views.stale == nil {
		r.views.stale = map[string]bool{}
	}
	for _, h := range touched {
		r.views.stale[h] = true
	}
	r.views.chainsVersion++
	r.views.chains.Store(nil)
}

// cached returns the cached records sorted by name. The slice is shared:
// callers must not modify it.
func (r *registry) cached() []schemas.PluginRecord {
	if p := r.views.records.Load(); p != nil {
		return *p
	}
	r.mu.RLock()
	version := r.views.recordsVersion
	names := make([]string, 0, len(r.cache))
	for name := range r.cache {
		names = append(names, name)
	}
	sort.Strings(names)
	recs := make([]schemas.PluginRecord, len(names))
	for i, name := range names {
		recs[i] = r.cache[name].rec
	}
	r.mu.RUnlock()
	// Publish it unless a write made it stale meanwhile (then the next
	// reader builds it again).
	r.mu.RLock()
	if r.views.recordsVersion == version {
		r.views.records.CompareAndSwap(nil, &recs)
	}
	r.mu.RUnlock()
	return recs
}

// chains returns the hook chains as they will run (chainorder.go):
// priority ascending (the hook's own priority, else the plugin's, default
// 0), refined by the steps' after/before constraints, ties broken by plugin
// name ascending. A chain is ordered when the registry changes, not per
// call. The map and its slices are shared: callers must not modify them.
func (r *registry) chains() map[string][]schemas.HookStep {
	if p := r.views.chains.Load(); p != nil {
		return *p
	}
	r.mu.RLock()
	version := r.views.chainsVersion
	next := make(map[string][]schemas.HookStep, len(r.views.built)+len(r.views.stale))
	for hook, steps := range r.views.built {
		if !r.views.stale[hook] {
			next[hook] = steps
		}
	}
	fresh := map[string][]schemas.HookStep{}
	for hook := range r.views.stale {
		for name := range r.index.hooked[hook] {
			rec := r.cache[name].rec
			for _, h := range rec.Manifest.Hooks {
				if h.Hook == hook {
					fresh[hook] = append(fresh[hook], hookStep(rec, h))
				}
			}
		}
	}
	r.mu.RUnlock()
	for hook, steps := range fresh {
		// The order depends only on the set of steps; sorting by name
		// first keeps the reasons' wording independent of map order.
		slices.SortFunc(steps, func(a, b schemas.HookStep) int { return strings.Compare(a.Plugin, b.Plugin) })
		next[hook], _ = orderSteps(steps)
	}
	r.mu.Lock()
	if r.views.chainsVersion == version {
		r.views.built, r.views.stale = next, nil
		r.views.chains.Store(&next)
	}
	r.mu.Unlock()
	return next
}

// offering returns the plugins offering command on model, by name, as
// cached now.
func (r *registry) offering(model, command string) []schemas.PluginRecord {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := r.index.offers[actionKey(model, command)]
	out := make([]schemas.PluginRecord, 0, len(names))
	for _, name := range names {
		out = append(out, r.cache[name].rec)
	}
	return out
}

// named reports whether another cached plugin's ordering constraints name
// plugin name.
func (r *registry) named(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.named[name] > 0
}
