package broker

import (
	"context"

	"sort"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
)

// jobKey is the jobs bucket key of a job version. Names and versions cannot
// contain '/', so the key is unambiguous.
func jobKey(name, version string) string { return name + "/" + version }

// handleJobDeploy runs job.pre_deploy, job.runtime_env and the injection
// chains, then stores the job with their outcome and publishes its
// deployed event. Deploys of one job name run one at a time.
func (b *Broker) handleJobDeploy(ctx context.Context, req *schemas.JobDeployRequest) (any, error) {
	object := "job/" + req.Name

	var chains []schemas.ChainRecord
	fail := func(e *schemas.Error) error {
		e.Details = withChains(e.Details, chains)
		return e
	}
	pre, err := b.runChain(ctx, schemas.HookJobPreDeploy, object, req, nil)
	if err != nil {
		return nil, err
	}
	chains = appendRun(chains, pre)
	if pre.err != nil {
		return nil, fail(pre.err)
	}
	spec := *req
	if pre.ran {
		// A patch may have changed the spec: it must still be a valid request.
		spec = schemas.JobDeployRequest{}
		if err := schemas.Decode(schemas.APIJobDeployRequest, pre.payload, &spec); err != nil {
			e := schemas.AsError(err)
			return nil, fail(&schemas.Error{Code: e.Code, Field: e.Field,
				Message: "job.pre_deploy changed the job into an invalid one: " + e.Message})
		}
		if spec.Name != req.Name {
			return nil, fail(schemas.Errorf(schemas.CodePluginError, "name", "job.pre_deploy may not rename the job (%s to %s)", req.Name, spec.Name))
		}
	}
	envRun, err := b.runChain(ctx, schemas.HookJobRuntimeEnv, object, spec, spec.Env)
	if err != nil {
		return nil, err
	}
	chains = appendRun(chains, envRun)
	if envRun.err != nil {
		return nil, fail(envRun.err)
	}
	injections := map[string]string{}
	for _, hook := range []string{schemas.HookJobDockerfileInjection, schemas.HookJobBootstrapInjection} {
		run, err := b.runChain(ctx, hook, object, spec, nil)
		if err != nil {
			return nil, err
		}
		chains = appendRun(chains, run)
		if run.err != nil {
			return nil, fail(run.err)
		}
		injections[hook] = run.fragments
	}

	now := time.Now().UTC()
	job := schemas.Job{
		Name: spec.Name, Version: spec.Version, Image: spec.Image,
		Env: envRun.env, Labels: spec.Labels, Status: schemas.JobDeployed, DeployedAt: now,
		DockerfileInjection: injections[schemas.HookJobDockerfileInjection],
		BootstrapInjection:  injections[schemas.HookJobBootstrapInjection],
	}
	if len(job.Env) == 0 {
		job.Env = nil
	}
	data := schemas.JobDeployedData{
		Name: job.Name, Version: job.Version, Image: job.Image, Env: job.Env, Labels: job.Labels,
		DockerfileInjection: job.DockerfileInjection, BootstrapInjection: job.BootstrapInjection, DeployedAt: now,
	}
	for _, c := range chains {
		data.ChainIDs = append(data.ChainIDs, c.ID)
	}
	res, err := commitRecord(ctx, b, b.st.jobs, jobKey(job.Name, job.Version), opID(ctx), func(cur *schemas.Job, _ bool) ([]*event.Event, time.Duration, error) {
		*cur = job
		ev, err := NewEvent(schemas.TypeJobDeployed, data, WithSubject(object))
		return []*event.Event{ev}, 0, err
	})
	if err != nil {
		return nil, fail(schemas.AsError(err))
	}
	eid := firstID(res.EventIDs)
	b.log.Info().Str(logging.FieldJob, job.Name).Str(logging.FieldVersion, job.Version).Str("image", job.Image).Str(logging.FieldEventID, eid).Bool("replayed", res.Replayed).Msg("job deployed")
	return schemas.JobResponse{Job: res.Record, EventID: eid, Chains: chains}, nil
}

// firstID is the id of an operation's first event, "" without events.
func firstID(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// runGate runs a gate hook chain for a single-chain operation and returns
// its result and records; a rejection or failure comes back as the error,
// with the records in its details.
func (b *Broker) runGate(ctx context.Context, hook, object string, payload any) (chainResult, []schemas.ChainRecord, error) {
	run, err := b.runChain(ctx, hook, object, payload, nil)
	if err != nil {
		return run, nil, err
	}
	chains := appendRun(nil, run)
	if run.err != nil {
		run.err.Details = withChains(run.err.Details, chains)
		return run, chains, run.err
	}
	return run, chains, nil
}

// appendRun adds a chain run's record when the chain had steps.
func appendRun(chains []schemas.ChainRecord, run chainResult) []schemas.ChainRecord {
	if !run.ran {
		return chains
	}
	return append(chains, run.record)
}

// withChains puts every chain run of a failed operation in the error's
// details, so the caller sees the whole story.
func withChains(details map[string]any, chains []schemas.ChainRecord) map[string]any {
	if len(chains) == 0 {
		return details
	}
	if details == nil {
		details = map[string]any{}
	}
	details[schemas.DetailChains] = chains
	return details
}

// handleJobDelete runs job.pre_delete, then marks the job deleted and
// publishes its deleted event.
func (b *Broker) handleJobDelete(ctx context.Context, req *schemas.JobRef) (any, error) {
	object := "job/" + req.Name
	var cur schemas.Job
	if _, err := getJSON(ctx, b.st.jobs, jobKey(req.Name, req.Version), &cur); err != nil {
		if isNotFound(err) {
			return nil, jobNotFound(req)
		}
		return nil, err
	}
	if cur.Status == schemas.JobDeleted {
		return nil, schemas.Errorf(schemas.CodeConflict, "name", "job %s version %s is already deleted", req.Name, req.Version)
	}
	_, chains, err := b.runGate(ctx, schemas.HookJobPreDelete, object, cur)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	res, err := commitRecord(ctx, b, b.st.jobs, jobKey(req.Name, req.Version), opID(ctx), func(cur *schemas.Job, exists bool) ([]*event.Event, time.Duration, error) {
		if !exists {
			return nil, 0, jobNotFound(req)
		}
		if cur.Status == schemas.JobDeleted {
			return nil, 0, schemas.Errorf(schemas.CodeConflict, "name", "job %s version %s is already deleted", req.Name, req.Version)
		}
		cur.Status = schemas.JobDeleted
		cur.DeletedAt = &now
		ev, err := NewEvent(schemas.TypeJobDeleted, schemas.JobDeletedData{
			Name: cur.Name, Version: cur.Version, Image: cur.Image, DeletedAt: now,
		}, WithSubject(object))
		// A deleted job is kept for the retention, then leaves the bucket.
		return []*event.Event{ev}, b.cfg.JobRetention, err
	})
	if err != nil {
		e := schemas.AsError(err)
		e.Details = withChains(e.Details, chains)
		return nil, e
	}
	id := firstID(res.EventIDs)
	b.log.Info().Str(logging.FieldJob, req.Name).Str(logging.FieldVersion, req.Version).Str(logging.FieldEventID, id).Bool("replayed", res.Replayed).Msg("job deleted")
	return schemas.JobResponse{Job: res.Record, EventID: id, Chains: chains}, nil
}

func jobNotFound(req *schemas.JobRef) error {
	e := schemas.Errorf(schemas.CodeNotFound, "name", "job %s version %s does not exist", req.Name, req.Version)
	e.Details = map[string]any{schemas.DetailKind: "job", schemas.DetailName: req.Name, "version": req.Version}
	return e
}

func (b *Broker) handleJobGet(ctx context.Context, req *schemas.JobRef) (any, error) {
	var job schemas.Job
	if _, err := getJSON(ctx, b.st.jobs, jobKey(req.Name, req.Version), &job); err != nil {
		if isNotFound(err) {
			return nil, jobNotFound(req)
		}
		return nil, err
	}
	return job, nil
}

func (b *Broker) handleJobList(ctx context.Context, _ *schemas.JobListRequest) (any, error) {
	jobs, err := listJSON[schemas.Job](ctx, b.st.jobs)
	if err != nil {
		return nil, err
	}
	sort.Slice(jobs, func(i, j int) bool {
		if jobs[i].Name != jobs[j].Name {
			return jobs[i].Name < jobs[j].Name
		}
		return jobs[i].Version < jobs[j].Version
	})
	return schemas.JobListResponse{Jobs: jobs}, nil
}
