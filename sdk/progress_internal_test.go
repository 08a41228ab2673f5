package sdk

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/plugbus/plugbus/schemas"
)

func TestProgressChecks(t *testing.T) {
	p, err := New(schemas.Manifest{Name: "x", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	run := &actionRun{p: p, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	hctx := context.WithValue(ctx, actionRunKey{}, run)
	for _, pct := range []float64{-1, 100.5, math.NaN(), math.Inf(1)} {
		if err := p.Progress(hctx, pct, ""); !errors.Is(err, ErrInvalidProgress) {
			t.Errorf("Progress(%v) = %v, want ErrInvalidProgress", pct, err)
		}
	}
	if run.latest.Seq != 0 {
		t.Fatalf("a refused report was counted: %+v", run.latest)
	}
	long := strings.Repeat("é", 600) // 1200 bytes
	if err := p.Progress(hctx, 0, long); err != nil {
		t.Fatal(err)
	}
	if err := p.Progress(hctx, 100, "done"); err != nil {
		t.Fatal(err)
	}
	if run.latest.Seq != 2 || run.latest.Percent != 100 || run.latest.Message != "done" {
		t.Fatalf("latest report %+v", run.latest)
	}
	if got := cut(long, maxProgressMessage); len(got) > maxProgressMessage || !utf8.ValidString(got) || len(got) < maxProgressMessage-1 {
		t.Errorf("cut to %d bytes (valid %v)", len(got), utf8.ValidString(got))
	}

	other, _ := New(schemas.Manifest{Name: "y", Version: "1.0.0"})
	if err := other.Progress(hctx, 10, ""); !errors.Is(err, ErrNotInAction) {
		t.Errorf("another plugin's Progress = %v, want ErrNotInAction", err)
	}
	cause := &schemas.Error{Code: schemas.CodeCancelled, Message: "cancelled by an operator"}
	cancel(cause)
	if err := p.Progress(hctx, 20, ""); !errors.Is(err, schemas.ErrCancelled) {
		t.Errorf("Progress after cancel = %v, want the cause", err)
	}
}
