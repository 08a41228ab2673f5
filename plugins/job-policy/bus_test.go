package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/plugintest"
	"github.com/plugbus/plugbus/wire"
)

func TestAgainstTheBus(t *testing.T) {
	bus := plugintest.Start(t)
	p, err := sdk.New(Manifest(), sdk.WithPrefix(bus.Prefix()), sdk.WithConfig(map[string]any{
		ConfigAllowedImages: []string{"registry.internal/*"},
		ConfigEnv:           map[string]string{"TZ": "UTC", "PORT": "8080"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(p); err != nil {
		t.Fatal(err)
	}
	bus.StartPlugin(t, p)
	if rec := bus.Plugin(t, "job-policy"); rec.State != schemas.StateActive {
		t.Fatalf("state = %s (%v)", rec.State, rec.LastError)
	}

	t.Run("hook subjects answer", func(t *testing.T) {
		call := func(hook string, job schemas.JobDeployRequest) (schemas.HookResponse, error) {
			payload, _ := json.Marshal(job)
			var resp schemas.HookResponse
			err := wire.Call(context.Background(), bus.Conn(), wire.HookSubject(bus.Prefix(), hook, "job-policy"),
				schemas.HookRequest{Hook: hook, ChainID: "test", Object: "job/" + job.Name, Payload: payload, Env: job.Env}, &resp)
			return resp, err
		}
		resp, err := call(schemas.HookJobPreDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "docker.io/evil:latest"})
		if err != nil || resp.Outcome != schemas.HookReject ||
			resp.Reason != `image "docker.io/evil:latest" matches none of the allowed patterns: registry.internal/*` {
			t.Errorf("pre_deploy = %+v, %v", resp, err)
		}
		resp, err = call(schemas.HookJobPreDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "registry.internal/web:1"})
		if err != nil || resp.Outcome != schemas.HookContinue {
			t.Errorf("pre_deploy = %+v, %v", resp, err)
		}
		resp, err = call(schemas.HookJobRuntimeEnv, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "x", Env: map[string]string{"PORT": "80"}})
		if err != nil || !reflect.DeepEqual(resp.Env, map[string]string{"TZ": "UTC"}) {
			t.Errorf("runtime_env = %+v, %v", resp, err)
		}
	})

	t.Run("hooks.list shows the steps", func(t *testing.T) {
		var list schemas.HookListResponse
		bus.MustCall(t, schemas.APIHooksList, schemas.HookListRequest{}, &list)
		policies := map[string]string{}
		for _, c := range list.Chains {
			for _, s := range c.Steps {
				if s.Plugin == "job-policy" {
					policies[c.Hook] = s.FailurePolicy
				}
			}
		}
		want := map[string]string{schemas.HookJobPreDeploy: schemas.FailurePolicyFail, schemas.HookJobRuntimeEnv: schemas.FailurePolicyIgnore}
		if !reflect.DeepEqual(policies, want) {
			t.Errorf("job-policy steps = %v, want %v", policies, want)
		}
	})

	t.Run("a deploy of a foreign image is rejected", func(t *testing.T) {
		err := bus.Call(schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "evil", Version: "1", Image: "docker.io/evil:latest"}, nil)
		var se *schemas.Error
		if !errors.As(err, &se) || se.Code != schemas.CodeRejected || se.Plugin != "job-policy" ||
			!strings.Contains(se.Message, `image "docker.io/evil:latest" matches none of the allowed patterns: registry.internal/*`) {
			t.Fatalf("deploy error = %#v, want rejected by job-policy", err)
		}
		if err := bus.Call(schemas.APIJobsGet, schemas.JobRef{Name: "evil", Version: "1"}, nil); !errors.Is(err, schemas.ErrNotFound) {
			t.Errorf("the rejected job exists: %v", err)
		}
	})

	t.Run("an allowed deploy gets the env", func(t *testing.T) {
		var resp schemas.JobResponse
		bus.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "1", Image: "registry.internal/web:1",
			Env: map[string]string{"PORT": "80"}}, &resp)
		if want := map[string]string{"PORT": "80", "TZ": "UTC"}; !reflect.DeepEqual(resp.Job.Env, want) {
			t.Errorf("env = %v, want %v (the job's PORT wins)", resp.Job.Env, want)
		}
		var hooks []string
		for _, c := range resp.Chains {
			hooks = append(hooks, c.Hook+"="+c.Outcome)
		}
		if want := []string{"job.pre_deploy=completed", "job.runtime_env=completed"}; !reflect.DeepEqual(hooks, want) {
			t.Errorf("chains = %v, want %v", hooks, want)
		}
	})

	t.Run("config changes take effect", func(t *testing.T) {
		var rec schemas.PluginRecord
		bus.MustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "job-policy",
			Set: map[string]any{ConfigAllowedImages: []string{"registry.internal/*", "docker.io/*"}}}, &rec)
		bus.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "evil", Version: "1", Image: "docker.io/evil:latest"}, nil)

		err := bus.Call(schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "job-policy",
			Set: map[string]any{ConfigAllowedImages: []string{"[oops"}}}, nil)
		var se *schemas.Error
		if !errors.As(err, &se) || se.Code != schemas.CodeInvalidField || se.Field != "config.allowed_images[0]" {
			t.Fatalf("bad pattern: error = %#v, want invalid_field on config.allowed_images[0]", err)
		}
		if got := p.Config().Strings(ConfigAllowedImages); !reflect.DeepEqual(got, []string{"registry.internal/*", "docker.io/*"}) {
			t.Errorf("config after a refused change = %v", got)
		}
		// The rules in force are still the accepted ones.
		err = bus.Call(schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "other", Version: "1", Image: "quay.io/x"}, nil)
		if !errors.Is(err, schemas.ErrRejected) || !strings.Contains(err.Error(), "registry.internal/*, docker.io/*") {
			t.Errorf("deploy after a refused change: %v, want a rejection naming the accepted patterns", err)
		}

		// One pattern, as `busctl plugins config job-policy --set allowed_images=quay.io/*` sends it.
		bus.MustCall(t, schemas.APIPluginsConfig, schemas.PluginConfigRequest{Name: "job-policy",
			Set: map[string]any{ConfigAllowedImages: []any{"quay.io/*"}}}, nil)
		bus.MustCall(t, schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "other", Version: "1", Image: "quay.io/x"}, nil)
		err = bus.Call(schemas.APIJobsDeploy, schemas.JobDeployRequest{Name: "web", Version: "2", Image: "registry.internal/web:2"}, nil)
		if !errors.Is(err, schemas.ErrRejected) {
			t.Errorf("deploy of a no longer allowed image: %v, want rejected", err)
		}
	})
}
