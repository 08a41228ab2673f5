package dashboard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
)

// The recent runs say which chain was resumed after a broker crash and
// which of its steps were answered from the chain journal.
func TestHooksPageShowsResumedRuns(t *testing.T) {
	bs := startBus(t)
	rec := schemas.ChainRecord{ID: "op1-abc-0", Hook: schemas.HookAlertPreNotify, Object: "alert/a1", Outcome: schemas.ChainCompleted,
		StartedAt: time.Now().UTC(), DurationMs: 3.5, Resumed: true, Steps: []schemas.StepRecord{
			{Plugin: "first", FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepContinued, DurationMs: 1.5, Replayed: true},
			{Plugin: "second", FailurePolicy: schemas.FailurePolicyFail, Outcome: schemas.StepPatched, DurationMs: 2},
		}}
	if _, err := bs.b.Publisher().Publish(ctxT(t), schemas.TypeHookChainCompleted, rec, broker.WithSubject(rec.Object)); err != nil {
		t.Fatal(err)
	}
	c, _ := bs.login(t)
	body := bs.getBody(t, "/dash/fragment/hooks", c)
	i := strings.Index(body, `data-chain="op1-abc-0"`)
	if i < 0 {
		t.Fatalf("the run is not on the page:\n%s", body)
	}
	row := body[i:]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, ">resumed</span>") || !strings.Contains(row, "first · continued · from the journal") ||
		!strings.Contains(row, "second · patched · 2") {
		t.Errorf("the resumed run's row:\n%s", row)
	}
}
