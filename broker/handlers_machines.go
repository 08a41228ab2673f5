package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/plugbus/plugbus/schemas"
)

// ModelMachines is the object model of machine actions.
const ModelMachines = "machines"

func machineNotFound(name string) error {
	e := schemas.Errorf(schemas.CodeNotFound, "name", "machine %q does not exist (a machine exists once a param is set on it)", name)
	e.Details = map[string]any{schemas.DetailKind: "machine", schemas.DetailName: name}
	return e
}

func (b *Broker) handleMachineGet(ctx context.Context, req *schemas.MachineRef) (any, error) {
	var m schemas.Machine
	if _, err := getJSON(ctx, b.st.machines, req.Name, &m); err != nil {
		if isNotFound(err) {
			return nil, machineNotFound(req.Name)
		}
		return nil, err
	}
	return m, nil
}

func (b *Broker) handleMachineList(ctx context.Context, _ *schemas.MachineListRequest) (any, error) {
	ms, err := listJSON[schemas.Machine](ctx, b.st.machines)
	if err != nil {
		return nil, err
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return schemas.MachineListResponse{Machines: ms}, nil
}

func (b *Broker) handleMachineSetParam(ctx context.Context, req *schemas.MachineSetParamRequest) (any, error) {
	return updateJSON(ctx, b.st.machines, req.Machine, func(cur *schemas.Machine, exists bool) error {
		if !exists {
			*cur = schemas.Machine{Name: req.Machine}
		}
		if cur.Params == nil {
			cur.Params = map[string]any{}
		}
		if req.Value == nil {
			delete(cur.Params, req.Param)
		} else {
			cur.Params[req.Param] = req.Value
		}
		cur.UpdatedAt = time.Now().UTC()
		return nil
	})
}

// handleMachineAction routes an action to the plugin offering the command
// on machines, enforcing required params first, and publishes the
// action_requested and action_completed events around the call.
func (b *Broker) handleMachineAction(ctx context.Context, req *schemas.MachineActionRequest) (any, error) {
	rec, spec, err := b.routeAction(ModelMachines, req.Command, req.Plugin)
	if err != nil {
		return nil, err
	}
	object := "machine/" + req.Machine
	var machine schemas.Machine
	if _, err := getJSON(ctx, b.st.machines, req.Machine, &machine); err != nil && !isNotFound(err) {
		return nil, err
	}
	params := map[string]any{}
	for k, v := range req.Params {
		params[k] = v
	}
	for _, p := range append(append([]string{}, spec.RequiredParams...), spec.OptionalParams...) {
		if _, ok := params[p]; !ok {
			if v, ok := machine.Params[p]; ok {
				params[p] = v
			}
		}
	}
	if err := requireParams(spec, params, req); err != nil {
		return nil, err
	}

	// machine.pre_action may change the params or refuse the action.
	run, chains, err := b.runGate(ctx, schemas.HookMachinePreAction, object, schemas.MachineActionRequest{
		Machine: req.Machine, Command: req.Command, Params: params, Plugin: rec.Name,
	})
	if err != nil {
		return nil, err
	}
	if run.ran {
		var patched schemas.MachineActionRequest
		if err := json.Unmarshal(run.payload, &patched); err != nil {
			return nil, schemas.Errorf(schemas.CodePluginError, "params", "machine.pre_action changed the action into an invalid one: %v", err)
		}
		if patched.Machine != req.Machine || patched.Command != req.Command || patched.Plugin != rec.Name {
			return nil, schemas.Errorf(schemas.CodePluginError, "command", "machine.pre_action may change params only, not the machine, command or plugin")
		}
		params = patched.Params
		if params == nil {
			params = map[string]any{}
		}
		if err := requireParams(spec, params, req); err != nil {
			return nil, err
		}
	}

	// The action id comes from the operation: a retry with the same
	// idempotency key is the same action (a plugin may use the id to do
	// its side effect once: sdk Once).
	op := opID(ctx)
	actionID := uuid.NewSHA1(uuid.NameSpaceOID, []byte("plugbus/action/"+op)).String()
	// Still the machine's only operation on the bus (buslock.go)?
	if err := checkLock(ctx); err != nil {
		return nil, err
	}
	timeout := spec.Timeout.D()
	if timeout == 0 {
		timeout = b.cfg.ActionTimeout
	}
	now := time.Now().UTC()
	row, created, err := b.createAction(ctx, schemas.ActionRecord{ID: actionID, Model: ModelMachines, Object: req.Machine, Machine: req.Machine,
		Command: req.Command, Plugin: rec.Name, Params: params, Status: schemas.ActionPending,
		Timeout: schemas.Duration(timeout), Deadline: now.Add(timeout), CreatedAt: now, UpdatedAt: now}, op)
	if err != nil {
		return nil, err
	}
	if created || row.Status == schemas.ActionPending {
		// A pending action found by a retry was left by a broker that
		// stopped before the plugin took it: call the plugin again (it
		// sees the same action id).
		go b.dispatchAction(ctx, row)
	}
	return b.answerAction(ctx, row, req.NoWait, chains)
}

// answerAction waits for what the caller of machines.action asked for: the
// action's end, or with noWait the plugin taking it, within the caller's
// deadline.
func (b *Broker) answerAction(ctx context.Context, row actionRow, noWait bool, chains []schemas.ChainRecord) (any, error) {
	done := func(r actionRow) bool {
		return schemas.ActionFinal(r.Status) || noWait && r.Status != schemas.ActionPending
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok {
		// Leave the time to answer before the caller gives up.
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-commitMargin))
	}
	got, err := b.waitAction(wctx, row.ID, done)
	cancel()
	if got.ID != "" {
		row = got
	}
	resp := schemas.MachineActionResponse{ActionID: row.ID, Machine: row.Object, Command: row.Command, Plugin: row.Plugin,
		Status: row.Status, Chains: chains}
	switch {
	case err != nil && noWait:
		return resp, nil // still pending: the caller follows it
	case err != nil:
		e := schemas.Errorf(schemas.CodeTimeout, "", "action %s on machine %s is still %s: it goes on; follow it by its id", row.Command, row.Object, row.Status)
		e.Plugin = row.Plugin
		e.Details = map[string]any{schemas.DetailActionID: row.ID, schemas.DetailStatus: row.Status}
		return nil, e
	case row.Status == schemas.ActionSucceeded:
		resp.Result = row.Result
		if len(resp.Result) == 0 {
			resp.Result = json.RawMessage("null")
		}
		return resp, nil
	case schemas.ActionFinal(row.Status):
		e := schemas.Error{Code: schemas.CodeInternal, Message: "the action ended without an error"}
		if row.Error != nil {
			e = *row.Error
		}
		if e.Plugin == "" && row.Status == schemas.ActionFailed {
			e.Plugin = row.Plugin
		}
		return nil, &e
	}
	return resp, nil
}

// requireParams refuses an action whose required params are absent.
func requireParams(spec schemas.ActionSpec, params map[string]any, req *schemas.MachineActionRequest) error {
	for _, p := range spec.RequiredParams {
		if v, ok := params[p]; !ok || v == nil {
			return &schemas.Error{Code: schemas.CodeMissingParam, Field: "params." + p,
				Message: fmt.Sprintf("action %s needs param %q: pass it with the request or set it on machine %s", req.Command, p, req.Machine),
				Details: map[string]any{schemas.DetailParam: p, schemas.DetailMachine: req.Machine, schemas.DetailCommand: req.Command}}
		}
	}
	return nil
}

// routeAction finds the ACTIVE plugin offering command on model. plugin,
// when set, selects one by name.
func (b *Broker) routeAction(model, command, plugin string) (schemas.PluginRecord, schemas.ActionSpec, error) {
	type cand struct {
		rec  schemas.PluginRecord
		spec schemas.ActionSpec
	}
	var active, inactive []cand
	for _, rec := range b.reg.offering(model, command) {
		if plugin != "" && rec.Name != plugin {
			continue
		}
		for _, a := range rec.Manifest.Actions {
			if a.Model != model || a.Command != command {
				continue
			}
			if rec.State == schemas.StateActive {
				active = append(active, cand{rec, a})
			} else {
				inactive = append(inactive, cand{rec, a})
			}
		}
	}
	switch {
	case len(active) == 1:
		return active[0].rec, active[0].spec, nil
	case len(active) > 1:
		names := make([]string, len(active))
		for i, c := range active {
			names[i] = c.rec.Name
		}
		return schemas.PluginRecord{}, schemas.ActionSpec{}, &schemas.Error{Code: schemas.CodeAmbiguousAction, Field: "plugin",
			Message: fmt.Sprintf("several plugins offer %s on %s (%s): name the one to use", command, model, strings.Join(names, ", ")),
			Details: map[string]any{schemas.DetailPlugins: names}}
	case len(inactive) > 0:
		c := inactive[0]
		msg := fmt.Sprintf("plugin %s offers %s but is %s", c.rec.Name, command, c.rec.State)
		if c.rec.LastError != nil {
			msg += ": " + c.rec.LastError.Message
		}
		return schemas.PluginRecord{}, schemas.ActionSpec{}, &schemas.Error{Code: schemas.CodeNotActive, Field: "command", Plugin: c.rec.Name, Message: msg}
	}
	commands := map[string]bool{}
	for _, rec := range b.reg.cached() {
		if rec.State != schemas.StateActive {
			continue
		}
		for _, a := range rec.Manifest.Actions {
			if a.Model == model {
				commands[a.Command] = true
			}
		}
	}
	avail := make([]string, 0, len(commands))
	for c := range commands {
		avail = append(avail, c)
	}
	sort.Strings(avail)
	msg := fmt.Sprintf("no active plugin offers action %q on %s", command, model)
	if plugin != "" {
		msg = fmt.Sprintf("plugin %q does not offer action %q on %s", plugin, command, model)
	}
	if len(avail) > 0 {
		msg += "; available: " + strings.Join(avail, ", ")
	}
	return schemas.PluginRecord{}, schemas.ActionSpec{}, &schemas.Error{Code: schemas.CodeUnknownAction, Field: "command", Message: msg,
		Details: map[string]any{schemas.DetailAvailable: avail}}
}
