package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/client"
)

// Machines reads and writes machine params.
type Machines interface {
	// Params returns a machine's params; a machine that does not exist has
	// none (nil, nil).
	Params(ctx context.Context, machine string) (map[string]any, error)
	// SetParam sets one param on a machine, creating the machine if needed.
	SetParam(ctx context.Context, machine, param string, value any) error
}

// Result is what both actions return.
type Result struct {
	Parameter string `json:"parameter"`
	Value     int    `json:"value"`
}

// Incrementer implements the actions.
type Incrementer struct {
	Machines Machines
}

// Increment adds the step to the machine's counter param. The read and the
// write are two broker calls, so two increments of the same machine at the
// same moment may lose one; run one instance if that matters.
func (inc *Incrementer) Increment(ctx context.Context, a *sdk.Action) (any, error) {
	if a.Object == "" {
		return nil, schemas.Errorf(schemas.CodeInvalidField, "object", "increment needs a machine")
	}
	step, err := a.Int(ParamStep, 1)
	if err != nil {
		return nil, err
	}
	param, err := parameter(a)
	if err != nil {
		return nil, err
	}
	params, err := inc.Machines.Params(ctx, a.Object)
	if err != nil {
		return nil, err
	}
	cur, err := current(params, a.Object, param)
	if err != nil {
		return nil, err
	}
	next := cur + step
	if err := inc.Machines.SetParam(ctx, a.Object, param, next); err != nil {
		return nil, err
	}
	return Result{Parameter: param, Value: next}, nil
}

// ResetCount sets the counter param to 0. The broker guarantees
// incrementer/touched is present.
func (inc *Incrementer) ResetCount(ctx context.Context, a *sdk.Action) (any, error) {
	if a.Object == "" {
		return nil, schemas.Errorf(schemas.CodeInvalidField, "object", "reset_count needs a machine")
	}
	if _, ok := a.Param(ParamTouched); !ok {
		return nil, sdk.MissingParam(ParamTouched)
	}
	param, err := parameter(a)
	if err != nil {
		return nil, err
	}
	if err := inc.Machines.SetParam(ctx, a.Object, param, 0); err != nil {
		return nil, err
	}
	return Result{Parameter: param, Value: 0}, nil
}

func parameter(a *sdk.Action) (string, error) {
	param, err := a.String(ParamParameter, DefaultParameter)
	if err != nil {
		return "", err
	}
	if param == "" {
		return "", sdk.InvalidParam(ParamParameter, "must not be empty")
	}
	return param, nil
}

// current returns the counter's value, 0 when unset.
func current(params map[string]any, machine, param string) (int, error) {
	v, ok := params[param]
	if !ok || v == nil {
		return 0, nil
	}
	switch x := v.(type) {
	case float64: // JSON numbers
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int(x), nil
		}
	case int:
		return x, nil
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return n, nil
		}
	}
	return 0, schemas.Errorf(schemas.CodeConflict, "params."+param,
		"machine %s param %q is %v, not an integer: reset it with reset_count", machine, param, v)
}

// BrokerMachines reaches machines through the broker API with the
// plugin's client.
type BrokerMachines struct {
	Bus *client.Client
}

// Params implements Machines with machines.get.
func (b BrokerMachines) Params(ctx context.Context, machine string) (map[string]any, error) {
	m, err := b.Bus.GetMachine(ctx, machine)
	if errors.Is(err, schemas.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read machine %s: %w", machine, err)
	}
	return m.Params, nil
}

// SetParam implements Machines with machines.set-param.
func (b BrokerMachines) SetParam(ctx context.Context, machine, param string, value any) error {
	if _, err := b.Bus.SetMachineParam(ctx, machine, param, value); err != nil {
		return fmt.Errorf("set %s on machine %s: %w", param, machine, err)
	}
	return nil
}
