package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// A long action reports its progress with the handler's context and stops
// when that context ends: an operator cancelled it (busctl actions cancel)
// or it ran past the manifest's timeout, and context.Cause says which.
func ExamplePlugin_Progress() {
	p, _ := sdk.New(schemas.Manifest{Name: "flasher", Version: "1.0.0", Actions: []schemas.ActionSpec{
		{Command: "firmware-update", Model: "machines", Timeout: schemas.Duration(30 * time.Minute)},
	}})
	flash := func(ctx context.Context, bank int) error {
		select {
		case <-time.After(10 * time.Millisecond): // the real work
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	p.HandleAction("firmware-update", func(ctx context.Context, a *sdk.Action) (any, error) {
		for bank := 1; bank <= 4; bank++ {
			if err := flash(ctx, bank); err != nil {
				if errors.Is(err, schemas.ErrCancelled) {
					// An operator cancelled it: the error says who and why.
					return nil, err
				}
				return nil, fmt.Errorf("flash bank %d: %w", bank, err)
			}
			// Sent in the background; the broker keeps the last one and
			// publishes io.plugbus.machine.v1.action_progress events.
			if err := p.Progress(ctx, float64(bank)*25, fmt.Sprintf("flashed bank %d of 4", bank)); err != nil {
				return nil, err
			}
		}
		return map[string]string{"firmware": "2.1.0"}, nil
	})

	// Outside an action handler there is no action to report on.
	fmt.Println(p.Progress(context.Background(), 50, "halfway"))
	// Output:
	// sdk: progress reported outside an action handler (pass the handler's ctx)
}
