package broker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// randomChain makes n steps with random priorities and random constraints
// that all agree with one hidden order, so a valid order exists.
func randomChain(r *rand.Rand, n int) []schemas.HookStep {
	hidden := r.Perm(n)
	steps := make([]schemas.HookStep, n)
	for i := range steps {
		steps[i] = schemas.HookStep{Plugin: fmt.Sprintf("p%02d", i), Priority: r.IntN(5) - 2}
	}
	rank := make([]int, n)
	for pos, i := range hidden {
		rank[i] = pos
	}
	for range r.IntN(2 * n) {
		a, b := r.IntN(n), r.IntN(n)
		if a == b {
			continue
		}
		if rank[a] > rank[b] {
			a, b = b, a
		}
		// a runs before b: said by b (after a) or by a (before b); some
		// constraints name plugins that are not in the chain.
		if r.IntN(2) == 0 {
			steps[b].After = append(steps[b].After, steps[a].Plugin)
		} else {
			steps[a].Before = append(steps[a].Before, steps[b].Plugin)
		}
		if r.IntN(4) == 0 {
			steps[a].After = append(steps[a].After, "absent")
		}
	}
	return steps
}

// Many random chains: the order satisfies every constraint, is the same
// whatever order the steps come in, and without constraints is the
// priority order.
func TestChainOrderRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		steps := randomChain(r, 2+r.IntN(10))
		want, cycle := orderSteps(slices.Clone(steps))
		if cycle != nil {
			t.Fatalf("round %d: cycle %v reported for constraints that agree with an order", round, cycle)
		}
		if len(want) != len(steps) {
			t.Fatalf("round %d: %d steps ordered of %d", round, len(want), len(steps))
		}
		pos := map[string]int{}
		for i, s := range want {
			pos[s.Plugin] = i
		}
		for _, s := range steps {
			for _, a := range s.After {
				if p, ok := pos[a]; ok && p > pos[s.Plugin] {
					t.Fatalf("round %d: %s runs before %s, which it declares after: %v", round, s.Plugin, a, names(want))
				}
			}
			for _, b := range s.Before {
				if p, ok := pos[b]; ok && p < pos[s.Plugin] {
					t.Fatalf("round %d: %s runs after %s, which it declares before: %v", round, s.Plugin, b, names(want))
				}
			}
		}
		for range 3 {
			shuffled := slices.Clone(steps)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			got, _ := orderSteps(shuffled)
			if !slices.Equal(names(got), names(want)) {
				t.Fatalf("round %d: the order depends on the input order: %v and %v", round, names(got), names(want))
			}
			for i := range got {
				if got[i].Reason != want[i].Reason {
					t.Fatalf("round %d: the reason of %s depends on the input order: %q and %q", round, got[i].Plugin, got[i].Reason, want[i].Reason)
				}
			}
		}
		plain := slices.Clone(steps)
		for i := range plain {
			plain[i].After, plain[i].Before = nil, nil
		}
		got, _ := orderSteps(plain)
		if !slices.IsSortedFunc(got, func(a, b schemas.HookStep) int {
			if stepLess(a, b) {
				return -1
			}
			if stepLess(b, a) {
				return 1
			}
			return 0
		}) {
			t.Fatalf("round %d: without constraints the order is not the priority order: %v", round, names(got))
		}
	}
}

func names(steps []schemas.HookStep) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Plugin
	}
	return out
}

// Each step says why it is where it is.
func TestChainOrderReasons(t *testing.T) {
	steps := []schemas.HookStep{
		{Plugin: "audit", Priority: 0, After: []string{"policy"}},
		{Plugin: "policy", Priority: 10},
		{Plugin: "quota", Priority: 10},
		{Plugin: "late", Priority: 20, Before: []string{"quota"}},
		{Plugin: "first", Priority: -5},
	}
	got, cycle := orderSteps(steps)
	if cycle != nil {
		t.Fatal(cycle)
	}
	var lines []string
	for _, s := range got {
		lines = append(lines, s.Plugin+": "+s.Reason)
	}
	want := []string{
		"first: priority -5",
		"policy: before audit (audit: after policy)",
		"audit: after policy (audit: after policy)",
		"late: before quota (late: before quota)",
		"quota: after late (late: before quota)",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("order and reasons:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// A cycle (only possible in records stored by two brokers at once) is
// reported, and every step still runs, the cycle's in priority order.
func TestChainOrderCycleFallsBack(t *testing.T) {
	steps := []schemas.HookStep{
		{Plugin: "a", Priority: 1, After: []string{"b"}},
		{Plugin: "b", Priority: 2, After: []string{"c"}},
		{Plugin: "c", Priority: 3, After: []string{"a"}},
		{Plugin: "d", Priority: 0},
	}
	got, cycle := orderSteps(steps)
	// Read from a along "runs before": a → c (c after a) → b (b after c)
	// → a (a after b).
	if want := []string{"a", "c", "b", "a"}; !slices.Equal(cycle, want) {
		t.Fatalf("cycle %v, want %v", cycle, want)
	}
	if !slices.Equal(names(got), []string{"d", "a", "b", "c"}) {
		t.Fatalf("order %v, want d then the cycle in priority order", names(got))
	}
	if !strings.Contains(got[1].Reason, "constraint cycle a → c → b → a ignored") {
		t.Fatalf("reason %q", got[1].Reason)
	}
}

// Two plugins declaring after each other: the second registration is
// refused with the cycle named, and the chain stays as it was.
func TestRegisterRefusesConstraintCycle(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	pre := schemas.HookJobPreDeploy
	answers := map[string]func(schemas.HookRequest) (schemas.HookResponse, error){pre: cont}
	hookPlugin(t, s.ClientURL(), tb, "audit", 0, []schemas.HookSpec{{Hook: pre, After: []string{"policy"}}}, answers)
	hookPlugin(t, s.ClientURL(), tb, "other", 5, []schemas.HookSpec{{Hook: pre}}, answers)

	m := manifest("policy", "1.0.0")
	m.Hooks = []schemas.HookSpec{{Hook: pre, After: []string{"audit"}}}
	var resp schemas.RegisterResponse
	err := tb.call(t, schemas.APIPluginsRegister+".policy", schemas.RegisterRequest{Manifest: m}, &resp)
	e := wantCode(t, err, schemas.CodeConflict, "manifest.hooks[0].after")
	if !strings.Contains(e.Message, "audit → policy → audit") || !strings.Contains(e.Message, pre) {
		t.Fatalf("the refusal must name the hook point and the cycle: %s", e.Message)
	}
	if cyc, _ := e.Details[schemas.DetailCycle].([]any); len(cyc) != 3 {
		t.Fatalf("details.cycle = %v", e.Details[schemas.DetailCycle])
	}
	if err := tb.call(t, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: "policy"}, nil); err == nil {
		t.Fatal("the refused plugin was stored")
	}
	var hl schemas.HookListResponse
	tb.mustCall(t, schemas.APIHooksList, schemas.HookListRequest{Hook: pre}, &hl)
	if got := names(hl.Chains[0].Steps); !slices.Equal(got, []string{"audit", "other"}) {
		t.Fatalf("chain after the refusal: %v", got)
	}

	// Without the cycle it registers, and the chain follows the
	// constraints: audit (priority 0) waits for policy (9), which the
	// unconstrained other (5) still precedes.
	m.Hooks[0].After, m.Hooks[0].Before = nil, []string{"audit"}
	m.Priority = 9
	p := newFakePlugin(t, s.ClientURL(), m)
	p.onHook(pre, cont)
	p.start("plugbus")
	p.register(t, tb, nil)
	tb.mustCall(t, schemas.APIHooksList, schemas.HookListRequest{Hook: pre}, &hl)
	if got := names(hl.Chains[0].Steps); !slices.Equal(got, []string{"other", "policy", "audit"}) {
		t.Fatalf("chain with policy before audit: %v", got)
	}
	var reasons []string
	for _, s := range hl.Chains[0].Steps {
		reasons = append(reasons, s.Reason)
	}
	if want := []string{"priority 5", "before audit (audit: after policy)", "after policy (audit: after policy)"}; !slices.Equal(reasons, want) {
		t.Fatalf("reasons %q, want %q", reasons, want)
	}
}

// A manifest naming itself, or the same plugin both before and after, is
// refused by its validation.
func TestManifestConstraintValidation(t *testing.T) {
	m := manifest("audit", "1.0.0")
	m.Hooks = []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, After: []string{"audit"}}}
	wantCode(t, m.Validate(), schemas.CodeInvalidField, "manifest.hooks[0].after[0]")
	m.Hooks = []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, After: []string{"x"}, Before: []string{"x"}}}
	wantCode(t, m.Validate(), schemas.CodeInvalidField, "manifest.hooks[0].after[0]")
}
