package client

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

// Register registers (or re-registers) a plugin with the broker
// (schemas.APIPluginsRegister). The broker validates the manifest and runs
// the plugin's lifecycle; the reply's Changed is false when the same
// manifest was already registered.
func (c *Client) Register(ctx context.Context, req schemas.RegisterRequest) (*schemas.RegisterResponse, error) {
	var resp schemas.RegisterResponse
	if err := c.Call(ctx, schemas.APIPluginsRegister+"."+req.Manifest.Name, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListPlugins returns the registered plugins sorted by name
// (schemas.APIPluginsList), following the pages to the last. An empty
// state lists every plugin; otherwise only plugins in that state are
// returned.
func (c *Client) ListPlugins(ctx context.Context, state schemas.PluginState) ([]schemas.PluginRecord, error) {
	var out []schemas.PluginRecord
	req := schemas.PluginListRequest{State: state}
	for {
		page, err := c.ListPluginsPage(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Plugins...)
		if page.NextAfter == "" || page.NextAfter == req.After {
			return out, nil
		}
		req.After = page.NextAfter
	}
}

// ListPluginsPage returns one page of plugins.list: those named after
// req.After, at most req.Limit (schemas.MaxPluginPage when 0). The
// reply's NextAfter, when set, is the After of the next page.
func (c *Client) ListPluginsPage(ctx context.Context, req schemas.PluginListRequest) (*schemas.PluginListResponse, error) {
	var resp schemas.PluginListResponse
	if err := c.Call(ctx, schemas.APIPluginsList, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// GetPlugin returns one plugin's record (schemas.APIPluginsGet); a plugin
// that is not registered yields schemas.ErrNotFound.
func (c *Client) GetPlugin(ctx context.Context, name string) (*schemas.PluginRecord, error) {
	var resp schemas.PluginRecord
	if err := c.Call(ctx, schemas.APIPluginsGet, schemas.PluginGetRequest{Name: name}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// UnregisterPlugin removes a plugin from the registry: its record, config
// and durable consumer. The broker refuses (schemas.ErrConflict) while an
// instance still answers, unless force is set. It returns the removed
// record.
func (c *Client) UnregisterPlugin(ctx context.Context, name string, force bool) (*schemas.PluginRecord, error) {
	var resp schemas.PluginRecord
	if err := c.Call(ctx, schemas.APIPluginsUnregister+"."+name, schemas.PluginUnregisterRequest{Name: name, Force: force}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ConfigPlugin reads (set empty) or changes a plugin's configuration
// (schemas.APIPluginsConfig) and returns the plugin's record with the
// resulting config. The keys of set are merged over the current config; the
// broker validates the result against the plugin's required params and
// config schema (schemas.ErrMissingParam, schemas.ErrInvalidField) before it
// stores it and pushes it to the plugin's instances.
func (c *Client) ConfigPlugin(ctx context.Context, name string, set map[string]any) (*schemas.PluginRecord, error) {
	var resp schemas.PluginRecord
	if err := c.Call(ctx, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: name, Set: set}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// DeployJob deploys a job (schemas.APIJobsDeploy). The reply carries the job
// as stored and the id of the io.plugbus.job.v1.deployed event published;
// a pre-deploy hook may refuse it with schemas.ErrRejected.
func (c *Client) DeployJob(ctx context.Context, req schemas.JobDeployRequest) (*schemas.JobResponse, error) {
	var resp schemas.JobResponse
	if err := c.Call(ctx, schemas.APIJobsDeploy, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// DeleteJob deletes one version of a job (schemas.APIJobsDelete) and returns
// it with the id of the io.plugbus.job.v1.deleted event published.
func (c *Client) DeleteJob(ctx context.Context, name, version string) (*schemas.JobResponse, error) {
	var resp schemas.JobResponse
	if err := c.Call(ctx, schemas.APIJobsDelete, schemas.JobRef{Name: name, Version: version}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListJobs returns every job sorted by name then version
// (schemas.APIJobsList).
func (c *Client) ListJobs(ctx context.Context) ([]schemas.Job, error) {
	var resp schemas.JobListResponse
	if err := c.Call(ctx, schemas.APIJobsList, schemas.JobListRequest{}, &resp); err != nil {
		return nil, err
	}
	return resp.Jobs, nil
}

// GetJob returns one job version (schemas.APIJobsGet); an unknown one
// yields schemas.ErrNotFound.
func (c *Client) GetJob(ctx context.Context, name, version string) (*schemas.Job, error) {
	var resp schemas.Job
	if err := c.Call(ctx, schemas.APIJobsGet, schemas.JobRef{Name: name, Version: version}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// MachineAction runs an action on a machine (schemas.APIMachinesAction) and
// returns the plugin's result. Set req.Plugin when several plugins offer the
// command (otherwise schemas.ErrAmbiguousAction); a required param that is
// neither in req.Params nor on the machine yields schemas.ErrMissingParam
// with Field naming it. An action that is still running when the call's
// deadline comes yields schemas.ErrTimeout with the action's id in
// Details[schemas.DetailActionID]: it goes on; follow it with GetAction or
// WaitAction. With req.NoWait the reply comes once the plugin took the
// action (Status running, or pending when it has not answered yet).
func (c *Client) MachineAction(ctx context.Context, req schemas.MachineActionRequest) (*schemas.MachineActionResponse, error) {
	var resp schemas.MachineActionResponse
	if err := c.Call(ctx, schemas.APIMachinesAction, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// GetMachine returns one machine with its params (schemas.APIMachinesGet).
func (c *Client) GetMachine(ctx context.Context, name string) (*schemas.Machine, error) {
	var resp schemas.Machine
	if err := c.Call(ctx, schemas.APIMachinesGet, schemas.MachineRef{Name: name}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListMachines returns every machine sorted by name
// (schemas.APIMachinesList).
func (c *Client) ListMachines(ctx context.Context) ([]schemas.Machine, error) {
	var resp schemas.MachineListResponse
	if err := c.Call(ctx, schemas.APIMachinesList, schemas.MachineListRequest{}, &resp); err != nil {
		return nil, err
	}
	return resp.Machines, nil
}

// SetMachineParam sets one param on a machine, creating the machine if
// needed (schemas.APIMachinesSetParam), and returns the machine. A nil
// value deletes the param.
func (c *Client) SetMachineParam(ctx context.Context, machine, param string, value any) (*schemas.Machine, error) {
	var resp schemas.Machine
	req := schemas.MachineSetParamRequest{Machine: machine, Param: param, Value: value}
	if err := c.Call(ctx, schemas.APIMachinesSetParam, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// FireAlert fires an alert (schemas.APIAlertsFire). An empty req.ID gets a
// generated id; firing an id that is already firing updates the alert.
func (c *Client) FireAlert(ctx context.Context, req schemas.AlertFireRequest) (*schemas.AlertResponse, error) {
	var resp schemas.AlertResponse
	if err := c.Call(ctx, schemas.APIAlertsFire, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ResolveAlert resolves a firing alert (schemas.APIAlertsResolve).
func (c *Client) ResolveAlert(ctx context.Context, id string) (*schemas.AlertResponse, error) {
	var resp schemas.AlertResponse
	if err := c.Call(ctx, schemas.APIAlertsResolve, schemas.AlertRef{ID: id}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// HooksList returns the hook chains as the broker will run them
// (schemas.APIHooksList): per hook point, in schemas.HookPoints order, the
// steps in run order with each step's priority, timeout, failure policy and
// plugin state. An empty hook lists every hook point; otherwise only that one
// (schemas.HookPoints lists the valid names). A chain that no plugin
// implements comes back with no steps.
func (c *Client) HooksList(ctx context.Context, hook string) (*schemas.HookListResponse, error) {
	var resp schemas.HookListResponse
	if err := c.Call(ctx, schemas.APIHooksList, schemas.HookListRequest{Hook: hook}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
