// Command job-policy is a plugbus policy plugin for job deploys. It
// implements two hook points:
//
//	job.pre_deploy   rejects a job whose image matches none of the
//	                 allowed_images glob patterns (failure policy "fail": if
//	                 the plugin cannot answer, deploys stop)
//	job.runtime_env  adds the env vars of its config (failure policy
//	                 "ignore"); a var the job sets itself keeps the job's value
//
// Config:
//
//	allowed_images  array of glob patterns;
//	                default ["*"] (every image). '*' matches any characters,
//	                '/' and ':' included, so "registry.internal/*" allows every
//	                image of that registry; also '?', "[a-z]" and "{a,b}".
//	                Patterns match the image reference as written. An empty
//	                array allows nothing.
//	env             object of string values: the env vars to add
//
// Changes made with `busctl plugins config job-policy --set ...` take effect
// at once on every instance. Run it with `job-policy listen`; `job-policy
// define` prints its manifest.
package main

import (
	"encoding/json"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Config keys.
const (
	ConfigAllowedImages = "allowed_images"
	ConfigEnv           = "env"
)

// configSchema is the manifest's config schema: the broker validates the
// config against it before the plugin sees it.
const configSchema = `{
  "type": "object",
  "properties": {
    "allowed_images": {
      "description": "glob patterns an image must match to be deployed ('*' matches any characters, '/' included); default [\"*\"]. busctl splits a plain value on commas; pass a JSON array for a pattern that contains one",
      "type": "array",
      "items": {"type": "string", "minLength": 1}
    },
    "env": {
      "description": "env vars added to every deployed job",
      "type": "object",
      "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
      "additionalProperties": {"type": "string"}
    }
  }
}`

// Manifest returns the plugin's manifest.
func Manifest() schemas.Manifest {
	return schemas.Manifest{
		Name:        "job-policy",
		Version:     Version,
		Description: "Allows only images matching allowed_images and adds env vars to deployed jobs",
		URL:         "https://github.com/plugbus/plugbus/tree/main/plugins/job-policy",
		Category:    "policy",
		Hooks: []schemas.HookSpec{
			{Hook: schemas.HookJobPreDeploy, FailurePolicy: schemas.FailurePolicyFail},
			{Hook: schemas.HookJobRuntimeEnv, FailurePolicy: schemas.FailurePolicyIgnore},
		},
		ConfigSchema: json.RawMessage(configSchema),
	}
}

func main() {
	sdk.Main(Manifest(), Setup)
}

// Setup wires a Policy to the plugin: config changes replace its rules.
func Setup(p *sdk.Plugin) error {
	pol := NewPolicy()
	p.OnConfig(pol.Configure)
	p.OnPreDeploy(pol.PreDeploy)
	p.OnRuntimeEnv(pol.RuntimeEnv)
	return nil
}
