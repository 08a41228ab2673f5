package broker

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"

	"github.com/plugbus/plugbus/schemas"
)

// The order of a hook chain is its steps' priority order (lowest first,
// ties by plugin name) refined by the steps' after/before constraints: a
// stable topological order. Of the steps whose predecessors have all been
// placed, the one with the lowest (priority, name) goes next, so a chain
// without constraints runs in priority order and a constraint moves only
// the steps it has to. The order depends only on the set of steps, never
// on the order in which plugins registered.

// stepKey is a step's place in the priority order.
func stepLess(a, b schemas.HookStep) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	return a.Plugin < b.Plugin
}

// readySteps is a min-heap of step indexes by priority order.
type readySteps struct {
	idx   []int
	steps []schemas.HookStep
}

func (r *readySteps) Len() int           { return len(r.idx) }
func (r *readySteps) Less(i, j int) bool { return stepLess(r.steps[r.idx[i]], r.steps[r.idx[j]]) }
func (r *readySteps) Swap(i, j int)      { r.idx[i], r.idx[j] = r.idx[j], r.idx[i] }
func (r *readySteps) Push(x any)         { r.idx = append(r.idx, x.(int)) }
func (r *readySteps) Pop() any {
	n := len(r.idx) - 1
	x := r.idx[n]
	r.idx = r.idx[:n]
	return x
}

// edge is one constraint between two steps of a chain: from runs before
// to, because decl (the plugin whose manifest says so) declared it.
type edge struct {
	from, to int
	decl     string
}

// constraintEdges turns the steps' after/before lists into edges between
// the steps present; constraints on absent plugins have no effect.
func constraintEdges(steps []schemas.HookStep) []edge {
	at := make(map[string]int, len(steps))
	for i, s := range steps {
		at[s.Plugin] = i
	}
	var edges []edge
	for i, s := range steps {
		for _, p := range s.After {
			if j, ok := at[p]; ok && j != i {
				edges = append(edges, edge{from: j, to: i, decl: s.Plugin})
			}
		}
		for _, p := range s.Before {
			if j, ok := at[p]; ok && j != i {
				edges = append(edges, edge{from: i, to: j, decl: s.Plugin})
			}
		}
	}
	// In name order, so the reasons do not depend on the input's order.
	slices.SortFunc(edges, func(a, b edge) int {
		return strings.Compare(steps[a.from].Plugin+"\x00"+steps[a.to].Plugin+"\x00"+a.decl,
			steps[b.from].Plugin+"\x00"+steps[b.to].Plugin+"\x00"+b.decl)
	})
	return edges
}

// orderSteps returns the steps in chain order, each with its Reason, and
// the plugins of a constraint cycle when there is one (then the steps on
// and behind the cycle follow in priority order, their reasons saying the
// cycle was ignored).
func orderSteps(steps []schemas.HookStep) ([]schemas.HookStep, []string) {
	edges := constraintEdges(steps)
	preds := make([][]edge, len(steps))
	succs := make([][]int, len(steps))
	indeg := make([]int, len(steps))
	for _, e := range edges {
		preds[e.to] = append(preds[e.to], e)
		succs[e.from] = append(succs[e.from], e.to)
		indeg[e.to]++
	}
	ready := &readySteps{steps: steps}
	for i := range steps {
		if indeg[i] == 0 {
			ready.idx = append(ready.idx, i)
		}
	}
	heap.Init(ready)
	out := make([]schemas.HookStep, 0, len(steps))
	placed := make([]bool, len(steps))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		placed[i] = true
		s := steps[i]
		s.Reason = stepReason(steps, i, preds[i], edges, out)
		out = append(out, s)
		for _, j := range succs[i] {
			if indeg[j]--; indeg[j] == 0 {
				heap.Push(ready, j)
			}
		}
	}
	if len(out) == len(steps) {
		return out, nil
	}
	cycle := findCycle(steps, succs, placed)
	var rest []schemas.HookStep
	for i, s := range steps {
		if !placed[i] {
			s.Reason = fmt.Sprintf("priority %d; constraint cycle %s ignored", s.Priority, strings.Join(cycle, " → "))
			rest = append(rest, s)
		}
	}
	slices.SortStableFunc(rest, func(a, b schemas.HookStep) int {
		if stepLess(a, b) {
			return -1
		}
		if stepLess(b, a) {
			return 1
		}
		return 0
	})
	return append(out, rest...), cycle
}

// stepReason says why step i comes next after placed: a constraint that
// held it back behind a step the priority order puts later, one that
// moved it ahead of such a step, a tie, or just its priority.
func stepReason(steps []schemas.HookStep, i int, preds []edge, all []edge, placed []schemas.HookStep) string {
	s := steps[i]
	for _, e := range preds {
		if p := steps[e.from]; stepLess(s, p) {
			return fmt.Sprintf("after %s (%s)", p.Plugin, declared(steps, e))
		}
	}
	for _, e := range all {
		if e.from == i {
			if n := steps[e.to]; stepLess(n, s) {
				return fmt.Sprintf("before %s (%s)", n.Plugin, declared(steps, e))
			}
		}
	}
	if n := len(placed); n > 0 && placed[n-1].Priority == s.Priority {
		return fmt.Sprintf("priority %d, ties by plugin name", s.Priority)
	}
	for j, o := range steps {
		if j != i && o.Priority == s.Priority && s.Plugin < o.Plugin {
			return fmt.Sprintf("priority %d, ties by plugin name", s.Priority)
		}
	}
	return fmt.Sprintf("priority %d", s.Priority)
}

// declared phrases the constraint behind e as its manifest has it.
func declared(steps []schemas.HookStep, e edge) string {
	from, to := steps[e.from].Plugin, steps[e.to].Plugin
	if e.decl == to {
		return fmt.Sprintf("%s: after %s", to, from)
	}
	return fmt.Sprintf("%s: before %s", from, to)
}

// findCycle returns one cycle among the steps not placed, as plugin names
// with the first repeated at the end ("a → b → a"), starting from the
// lowest name so the message is the same every time.
func findCycle(steps []schemas.HookStep, succs [][]int, placed []bool) []string {
	var starts []int
	for i := range steps {
		if !placed[i] {
			starts = append(starts, i)
		}
	}
	slices.SortFunc(starts, func(a, b int) int { return strings.Compare(steps[a].Plugin, steps[b].Plugin) })
	for _, start := range starts {
		// Depth-first from start over unplaced steps, successors in name order.
		path := []int{start}
		onPath := map[int]bool{start: true}
		visited := map[int]bool{}
		var dfs func(int) []string
		dfs = func(i int) []string {
			next := slices.Clone(succs[i])
			slices.SortFunc(next, func(a, b int) int { return strings.Compare(steps[a].Plugin, steps[b].Plugin) })
			for _, j := range next {
				if placed[j] {
					continue
				}
				if j == start {
					names := make([]string, 0, len(path)+1)
					for _, k := range path {
						names = append(names, steps[k].Plugin)
					}
					return append(names, steps[start].Plugin)
				}
				if onPath[j] || visited[j] {
					continue
				}
				visited[j] = true
				onPath[j], path = true, append(path, j)
				if c := dfs(j); c != nil {
					return c
				}
				onPath[j], path = false, path[:len(path)-1]
			}
			return nil
		}
		if c := dfs(start); c != nil {
			return c
		}
	}
	return nil
}

// hasConstraints reports whether a manifest's hooks carry ordering
// constraints of their own. A registration takes the hook-order lock when
// they do, or when another registered plugin's constraints name it
// (registry.named).
func hasConstraints(m schemas.Manifest) bool {
	for _, h := range m.Hooks {
		if len(h.After) > 0 || len(h.Before) > 0 {
			return true
		}
	}
	return false
}

// checkChainOrder refuses a manifest whose hook constraints, with the
// plugins registered now, would make a cycle in some chain; the error
// names the hook point and the cycle, and the field of the constraint.
func checkChainOrder(recs []schemas.PluginRecord, m schemas.Manifest) error {
	others := make([]schemas.PluginRecord, 0, len(recs)+1)
	for _, r := range recs {
		if r.Name != m.Name {
			others = append(others, r)
		}
	}
	others = append(others, schemas.PluginRecord{Name: m.Name, Version: m.Version, Manifest: m})
	for i, h := range m.Hooks {
		var steps []schemas.HookStep
		for _, r := range others {
			for _, rh := range r.Manifest.Hooks {
				if rh.Hook == h.Hook {
					steps = append(steps, hookStep(r, rh))
				}
			}
		}
		if _, cycle := orderSteps(steps); cycle != nil {
			field := fmt.Sprintf("manifest.hooks[%d]", i)
			switch {
			case len(h.After) > 0:
				field += ".after"
			case len(h.Before) > 0:
				field += ".before"
			}
			return &schemas.Error{Code: schemas.CodeConflict, Field: field, Plugin: m.Name,
				Message: fmt.Sprintf("the ordering constraints on %s would make a cycle: %s; the chain is left as it was: drop one of these constraints",
					h.Hook, strings.Join(cycle, " → ")),
				Details: map[string]any{schemas.DetailHook: h.Hook, schemas.DetailCycle: cycle}}
		}
	}
	return nil
}
