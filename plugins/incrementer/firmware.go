package main

import (
	"context"
	"fmt"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// The firmware-update action: a long action that pretends to flash a
// machine's firmware block by block, reporting progress after each block,
// to show long-running actions (docs/writing-a-plugin.md).
const (
	// ParamDuration is how long the update takes: a duration ("20s") or a
	// number of seconds; default DefaultUpdateDuration.
	ParamDuration = "duration"
	// FirmwareVersion is the version an update installs.
	FirmwareVersion = "2.1.0"
	// DefaultUpdateDuration is how long an update takes by default.
	DefaultUpdateDuration = 20 * time.Second
	// UpdateTimeout is the action's timeout (the manifest's), and
	// MaxUpdateDuration the longest duration it accepts.
	UpdateTimeout     = 10 * time.Minute
	MaxUpdateDuration = UpdateTimeout - time.Minute
	// updateBlocks is how many blocks an update flashes.
	updateBlocks = 20
)

// Progress reports how far an action has got (sdk.Plugin.Progress).
type Progress func(ctx context.Context, percent float64, message string) error

// FirmwareResult is what firmware-update returns.
type FirmwareResult struct {
	Machine  string `json:"machine"`
	Firmware string `json:"firmware"`
	Took     string `json:"took"`
}

// FirmwareUpdate flashes the machine's firmware in updateBlocks blocks
// over the duration param, reporting progress after each block, and
// answers the version it installed (it touches nothing: a demo of a long
// action); it stops when ctx ends (the action was cancelled or timed out)
// with ctx's cause.
func (*Incrementer) FirmwareUpdate(progress Progress) sdk.ActionHandler {
	return func(ctx context.Context, a *sdk.Action) (any, error) {
		if a.Object == "" {
			return nil, schemas.Errorf(schemas.CodeInvalidField, "object", "firmware-update needs a machine")
		}
		d, err := updateDuration(a)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		block := d / updateBlocks
		t := time.NewTimer(block)
		defer t.Stop()
		for i := 1; i <= updateBlocks; i++ {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("firmware update of %s stopped at block %d of %d: %w", a.Object, i, updateBlocks, context.Cause(ctx))
			case <-t.C:
			}
			t.Reset(block)
			msg := fmt.Sprintf("flashed block %d of %d", i, updateBlocks)
			if err := progress(ctx, float64(i)*100/updateBlocks, msg); err != nil {
				return nil, err
			}
		}
		return FirmwareResult{Machine: a.Object, Firmware: FirmwareVersion, Took: time.Since(start).Round(time.Second).String()}, nil
	}
}

// updateDuration reads the duration param.
func updateDuration(a *sdk.Action) (time.Duration, error) {
	v, ok := a.Param(ParamDuration)
	if !ok {
		return DefaultUpdateDuration, nil
	}
	var d time.Duration
	switch x := v.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(x); err != nil {
			return 0, sdk.InvalidParam(ParamDuration, "%q is not a duration such as 20s", x)
		}
	default:
		secs, err := a.Float(ParamDuration, 0)
		if err != nil {
			return 0, err
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 || d > MaxUpdateDuration {
		return 0, sdk.InvalidParam(ParamDuration, "must be between 0s and %s (the action's timeout is %s), got %s", MaxUpdateDuration, UpdateTimeout, d)
	}
	return d, nil
}
