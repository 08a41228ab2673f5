package broker

import (
	"context"
	"sort"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// jobKey is the jobs bucket key of a job version. Names and versions cannot
// contain '/', so the key is unambiguous.
func jobKey(name, version string) string { return name + "/" + version }

func (b *Broker) handleJobDeploy(ctx context.Context, req *schemas.JobDeployRequest) (any, error) {
	now := time.Now().UTC()
	job := schemas.Job{
		Name: req.Name, Version: req.Version, Image: req.Image,
		Env: req.Env, Labels: req.Labels, Status: schemas.JobDeployed, DeployedAt: now,
	}
	ev, err := NewEvent(schemas.TypeJobDeployed, schemas.JobDeployedData{
		Name: job.Name, Version: job.Version, Image: job.Image, Env: job.Env, Labels: job.Labels, DeployedAt: now,
	})
	if err != nil {
		return nil, err
	}
	if _, err := updateJSON(ctx, b.st.jobs, jobKey(req.Name, req.Version), func(cur *schemas.Job, _ bool) error {
		*cur = job
		return nil
	}); err != nil {
		return nil, err
	}
	if err := b.pub.PublishEvent(ctx, ev); err != nil {
		return nil, err
	}
	b.log.Info().Str(FieldJob, job.Name).Str(FieldVersion, job.Version).Str("image", job.Image).Str(FieldEventID, ev.ID()).Msg("job deployed")
	return schemas.JobResponse{Job: job, EventID: ev.ID()}, nil
}

func (b *Broker) handleJobDelete(ctx context.Context, req *schemas.JobRef) (any, error) {
	now := time.Now().UTC()
	job, err := updateJSON(ctx, b.st.jobs, jobKey(req.Name, req.Version), func(cur *schemas.Job, exists bool) error {
		if !exists {
			return jobNotFound(req)
		}
		if cur.Status == schemas.JobDeleted {
			return schemas.Errorf(schemas.CodeConflict, "name", "job %s version %s is already deleted", req.Name, req.Version)
		}
		cur.Status = schemas.JobDeleted
		cur.DeletedAt = &now
		return nil
	})
	if err != nil {
		return nil, err
	}
	id, err := b.pub.Publish(ctx, schemas.TypeJobDeleted, schemas.JobDeletedData{
		Name: job.Name, Version: job.Version, Image: job.Image, DeletedAt: now,
	})
	if err != nil {
		return nil, err
	}
	b.log.Info().Str(FieldJob, job.Name).Str(FieldVersion, job.Version).Str(FieldEventID, id).Msg("job deleted")
	return schemas.JobResponse{Job: job, EventID: id}, nil
}

func jobNotFound(req *schemas.JobRef) error {
	return schemas.Errorf(schemas.CodeNotFound, "name", "job %s version %s does not exist (list jobs with `busctl job ls`)", req.Name, req.Version)
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
