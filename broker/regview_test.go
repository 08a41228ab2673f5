package broker

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// referenceChains orders every hook point's chain from scratch, the way the
// registry did before its views were kept incrementally: all records by
// name, their steps per hook point, each chain ordered.
func referenceChains(recs []schemas.PluginRecord) map[string][]schemas.HookStep {
	recs = slices.Clone(recs)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	chains := map[string][]schemas.HookStep{}
	for _, rec := range recs {
		for _, h := range rec.Manifest.Hooks {
			chains[h.Hook] = append(chains[h.Hook], hookStep(rec, h))
		}
	}
	for hook, steps := range chains {
		chains[hook], _ = orderSteps(steps)
	}
	return chains
}

// referenceOffering scans every record for the plugins offering command on
// model, by name.
func referenceOffering(recs []schemas.PluginRecord, model, command string) []string {
	var out []string
	for _, rec := range recs {
		for _, a := range rec.Manifest.Actions {
			if a.Model == model && a.Command == command {
				out = append(out, rec.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// referenceNamed scans every other record's constraints for name.
func referenceNamed(recs []schemas.PluginRecord, name string) bool {
	for _, r := range recs {
		for _, h := range r.Manifest.Hooks {
			if r.Name != name && (slices.Contains(h.After, name) || slices.Contains(h.Before, name)) {
				return true
			}
		}
	}
	return false
}

// The registry's incremental views (regview.go) give what computing them
// from every record gives, through random registrations, state changes,
// manifest changes and removals.
func TestRegistryViewsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	hooks := []string{schemas.HookJobPreDeploy, schemas.HookJobRuntimeEnv, schemas.HookAlertPreNotify}
	commands := []string{"reboot", "wipe", "noop"}
	states := []schemas.PluginState{schemas.StateRegistered, schemas.StateInitializing, schemas.StateActive, schemas.StateError, schemas.StateStale}
	randomRecord := func(name string) schemas.PluginRecord {
		m := schemas.Manifest{Name: name, Version: fmt.Sprintf("1.0.%d", rng.IntN(3)), Priority: rng.IntN(3)}
		for _, h := range hooks {
			if rng.IntN(2) == 0 {
				continue
			}
			spec := schemas.HookSpec{Hook: h}
			if rng.IntN(3) == 0 {
				spec.After = []string{names[rng.IntN(len(names))]}
			}
			if rng.IntN(4) == 0 {
				spec.Before = []string{names[rng.IntN(len(names))]}
			}
			m.Hooks = append(m.Hooks, spec)
		}
		for _, c := range commands {
			if rng.IntN(3) == 0 {
				m.Actions = append(m.Actions, schemas.ActionSpec{Command: c, Model: "machines"})
			}
		}
		return schemas.PluginRecord{Name: name, Version: m.Version, State: states[rng.IntN(len(states))], Manifest: m}
	}
	r := newRegistry(&Broker{metrics: newMetrics()})
	var rev uint64
	for step := 0; step < 2000; step++ {
		name := names[rng.IntN(len(names))]
		rev++
		switch op := rng.IntN(10); {
		case op < 2:
			r.remove(name, rev)
		case op < 5:
			// A state change only.
			rec, ok := r.cache[name]
			if !ok {
				continue
			}
			rec.rec.State = states[rng.IntN(len(states))]
			r.put(rec.rec, rev)
		default:
			r.put(randomRecord(name), rev)
		}
		// Read some views now and then, so stale ones are rebuilt from
		// views built earlier, not always from scratch.
		if rng.IntN(3) > 0 {
			continue
		}
		recs := r.cached()
		var want []schemas.PluginRecord
		for _, c := range r.cache {
			want = append(want, c.rec)
		}
		sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
		if !reflect.DeepEqual(recs, want) && (len(recs) != 0 || len(want) != 0) {
			t.Fatalf("step %d: cached() = %v, want %v", step, recNames(recs), recNames(want))
		}
		if got, want := r.chains(), referenceChains(want); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: chains\n%s\nwant\n%s", step, dumpChains(got), dumpChains(want))
		}
		for _, c := range commands {
			if got, want := recNames(r.offering("machines", c)), referenceOffering(want, "machines", c); !slices.Equal(got, want) {
				t.Fatalf("step %d: offering %s = %v, want %v", step, c, got, want)
			}
		}
		for _, n := range names {
			if got, want := r.named(n), referenceNamed(want, n); got != want {
				t.Fatalf("step %d: named(%s) = %v, want %v", step, n, got, want)
			}
		}
	}
}

func recNames(recs []schemas.PluginRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Name)
	}
	return out
}

func dumpChains(c map[string][]schemas.HookStep) string {
	b, _ := json.MarshalIndent(c, "", " ")
	return string(b)
}

// A chain no changed plugin has a step on is not rebuilt: registrations
// elsewhere leave it (and its slice) as it was.
func TestRegistryChainsRebuiltOnlyWhereTouched(t *testing.T) {
	r := newRegistry(&Broker{metrics: newMetrics()})
	r.put(schemas.PluginRecord{Name: "gate", State: schemas.StateActive, Manifest: schemas.Manifest{Name: "gate",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}}}, 1)
	before := r.chains()[schemas.HookJobPreDeploy]
	for i := range 100 {
		name := fmt.Sprintf("other-%03d", i)
		r.put(schemas.PluginRecord{Name: name, State: schemas.StateActive, Manifest: schemas.Manifest{Name: name,
			Actions: []schemas.ActionSpec{{Command: name, Model: "machines"}}}}, uint64(2+i))
		if len(r.views.stale) != 0 {
			t.Fatalf("an action plugin marked %v stale", r.views.stale)
		}
	}
	after := r.chains()[schemas.HookJobPreDeploy]
	if len(after) != 1 || &after[0] != &before[0] {
		t.Fatal("the job.pre_deploy chain was rebuilt by registrations without a step on it")
	}
	if got := recNames(r.offering("machines", "other-042")); !slices.Equal(got, []string{"other-042"}) {
		t.Fatalf("offering = %v", got)
	}
	if strings.Join(recNames(r.cached()[:2]), ",") != "gate,other-000" {
		t.Fatalf("cached() = %v", recNames(r.cached()[:2]))
	}
}
