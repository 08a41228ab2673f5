package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

func TestSamplesValidate(t *testing.T) {
	covered := map[string]bool{}
	for _, s := range samples() {
		covered[s.path] = true
		t.Run(s.name, func(t *testing.T) {
			b, err := json.Marshal(s.v)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.Validate(s.path, b); err != nil {
				t.Fatalf("Validate(%s, %s) = %v", s.path, b, err)
			}
			if err := schemas.ValidateValue(s.path, s.v); err != nil {
				t.Fatalf("ValidateValue(%s) = %v", s.path, err)
			}
			if err := schemas.Validate(schemas.SchemaID(s.path), b); err != nil {
				t.Fatalf("Validate by $id = %v", err)
			}
		})
	}
	for _, p := range schemas.SchemaPaths() {
		if p != schemas.APIDefinitions && !covered[p] {
			t.Errorf("no sample validates against %s", p)
		}
	}
}

// TestSamplesDecode decodes every sample back into its Go type and checks
// nothing is lost.
func TestSamplesDecode(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			want, err := json.Marshal(s.v)
			if err != nil {
				t.Fatal(err)
			}
			typ := reflect.TypeOf(s.v)
			if typ.Kind() == reflect.Pointer {
				typ = typ.Elem()
			}
			out := reflect.New(typ)
			if err := schemas.Decode(s.path, want, out.Interface()); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got, err := json.Marshal(out.Interface())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("round trip changed the document:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// strictSchemas are the broker API requests and the manifest: they reject
// unknown top-level fields so typos are caught. Everything else (replies,
// records, events, broker → plugin requests) accepts them, so the contract
// can grow without breaking older readers.
var strictSchemas = map[string]bool{
	schemas.ManifestV1:                 true,
	schemas.APIRegisterRequest:         true,
	schemas.APIPluginListRequest:       true,
	schemas.APIPluginGetRequest:        true,
	schemas.APIPluginConfigRequest:     true,
	schemas.APIPluginUnregisterRequest: true,
	schemas.APIPluginReplayRequest:     true,
	schemas.APIJobDeployRequest:        true,
	schemas.APIJobRef:                  true,
	schemas.APIJobListRequest:          true,
	schemas.APIMachineRef:              true,
	schemas.APIMachineListRequest:      true,
	schemas.APIMachineSetParamRequest:  true,
	schemas.APIMachineActionRequest:    true,
	schemas.APIAlertFireRequest:        true,
	schemas.APIAlertRef:                true,
	schemas.APIHookListRequest:         true,
	schemas.APIHostRef:                 true,
	schemas.APIHostListRequest:         true,
	schemas.APIPluginHostRequest:       true,
	schemas.HostdConfigV1:              true,
	schemas.APICredsRequest:            true,
	schemas.APIHostCredsRequest:        true,
	schemas.APIStreamReadRequest:       true,
	schemas.APIStreamStopRequest:       true,
	schemas.APIAlertListRequest:        true,
	schemas.APIEventGetRequest:         true,
	schemas.APIDLQListRequest:          true,
	schemas.APIDLQRef:                  true,
	schemas.APIDLQReplayRequest:        true,
	schemas.APIDLQPurgeRequest:         true,
	schemas.APIAlertIntakeRequest:      true,
	schemas.APIChainGetRequest:         true,
	schemas.APIChainListRequest:        true,
	schemas.APIActionRef:               true,
	schemas.APIActionListRequest:       true,
	schemas.APIActionCancelRequest:     true,
	schemas.APIActionProgressRequest:   true,
	schemas.APIActionCompleteRequest:   true,
}

func TestUnknownTopLevelFields(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			b, _ := json.Marshal(s.v)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["zz_typo"] = 1
			b, _ = json.Marshal(m)
			err := schemas.Validate(s.path, b)
			if !strictSchemas[s.path] {
				if err != nil {
					t.Fatalf("lenient schema %s rejected an unknown field: %v", s.path, err)
				}
				return
			}
			e := asError(t, err)
			if e.Code != schemas.CodeInvalidField || e.Field != "zz_typo" {
				t.Fatalf("got %s field %q, want invalid_field on zz_typo: %v", e.Code, e.Field, e)
			}
		})
	}
}

func asError(t *testing.T, err error) *schemas.Error {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	var e *schemas.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *schemas.Error", err, err)
	}
	return e
}

func TestInvalidDocuments(t *testing.T) {
	const (
		invalid = schemas.CodeInvalidField
		bad     = schemas.CodeBadRequest
	)
	reg := func(manifest string) string { return `{"manifest":` + manifest + `}` }
	tests := []struct {
		name    string
		path    string
		doc     string
		code    string
		field   string
		message string // a substring the message must contain
	}{
		{"bad manifest name", schemas.APIRegisterRequest, reg(`{"name":"Bad_Name","version":"1.0.0"}`),
			invalid, "manifest.name", `field "manifest.name": must be lower-case letters, digits and dashes, starting with a letter (at most 63) (got "Bad_Name")`},
		{"manifest name too long", schemas.ManifestV1, `{"name":"a` + strings.Repeat("b", 63) + `","version":"1.0.0"}`,
			invalid, "name", "(at most 63)"},
		{"manifest version not semver", schemas.ManifestV1, `{"name":"a","version":"1.0"}`,
			invalid, "version", `must be a semantic version such as 1.2.3 (got "1.0")`},
		{"manifest version leading zero", schemas.ManifestV1, `{"name":"a","version":"01.0.0"}`,
			invalid, "version", "must be a semantic version"},
		{"missing manifest version", schemas.ManifestV1, `{"name":"a"}`,
			invalid, "version", `field "version": is required`},
		{"missing manifest", schemas.APIRegisterRequest, `{"instance_id":"x"}`,
			invalid, "manifest", "is required"},
		{"bad duration", schemas.APIRegisterRequest, reg(`{"name":"a","version":"1.0.0","events":{"types":["io.plugbus.job.v1.deployed"],"ack_wait":"30 seconds"}}`),
			invalid, "manifest.events.ack_wait", "must match pattern"},
		{"negative backoff", schemas.ManifestV1, `{"name":"a","version":"1.0.0","events":{"types":["io.plugbus.job.v1.deployed"],"backoff":["1s","-5s"]}}`,
			invalid, "events.backoff[1]", `(got "-5s")`},
		{"max_deliver 0", schemas.APIRegisterRequest, reg(`{"name":"a","version":"1.0.0","events":{"types":["io.plugbus.job.v1.deployed"],"max_deliver":0}}`),
			invalid, "manifest.events.max_deliver", "must be at least 1 (got 0)"},
		{"max_deliver a string", schemas.ManifestV1, `{"name":"a","version":"1.0.0","events":{"types":["x.y"],"max_deliver":"5"}}`,
			invalid, "events.max_deliver", "must be an integer (got a string)"},
		{"empty event types", schemas.ManifestV1, `{"name":"a","version":"1.0.0","events":{"types":[]}}`,
			invalid, "events.types", "must list at least one item"},
		{"missing event types", schemas.ManifestV1, `{"name":"a","version":"1.0.0","events":{"start":"all"}}`,
			invalid, "events.types", "is required"},
		{"bad event type", schemas.ManifestV1, `{"name":"a","version":"1.0.0","events":{"types":["io.plugbus.job.v1.deployed","not a type"]}}`,
			invalid, "events.types[1]", "must match pattern"},
		{"bad start", schemas.ManifestV1, `{"name":"a","version":"1.0.0","events":{"types":["x.y"],"start":"yesterday"}}`,
			invalid, "events.start", `must be one of "new", "all", or must be a valid RFC 3339 date-time, or must be a duration such as 24h or 90m (got "yesterday")`},
		{"bad failure policy", schemas.APIRegisterRequest, reg(`{"name":"a","version":"1.0.0","hooks":[{"hook":"job.pre_deploy","failure_policy":"retry"}]}`),
			invalid, "manifest.hooks[0].failure_policy", `must be one of "fail", "ignore" (got "retry")`},
		{"bad hook point", schemas.ManifestV1, `{"name":"a","version":"1.0.0","hooks":[{"hook":"job.pre_deploy"},{"hook":"PreDeploy"}]}`,
			invalid, "hooks[1].hook", `must be one of "job.pre_deploy", "job.runtime_env", "job.dockerfile_injection", "job.bootstrap_injection", "job.pre_delete", "machine.pre_action", "alert.pre_notify" (got "PreDeploy")`},
		{"unknown hook point in a registration", schemas.APIRegisterRequest, reg(`{"name":"a","version":"1.0.0","hooks":[{"hook":"job.post_deploy"}]}`),
			invalid, "manifest.hooks[0].hook", `must be one of "job.pre_deploy", `},
		{"typo in a hook", schemas.APIRegisterRequest, reg(`{"name":"a","version":"1.0.0","hooks":[{"hook":"job.pre_deploy","failure_polcy":"fail"}]}`),
			invalid, "manifest.hooks[0].failure_polcy", "is not a known field (known fields: after, before, failure_policy, hook, override, priority, timeout, when_inactive)"},
		{"action without command", schemas.ManifestV1, `{"name":"a","version":"1.0.0","actions":[{"model":"machines"}]}`,
			invalid, "actions[0].command", "is required"},
		{"bad action command", schemas.ManifestV1, `{"name":"a","version":"1.0.0","actions":[{"command":"Increment"}]}`,
			invalid, "actions[0].command", "must match pattern"},
		{"config schema not an object", schemas.ManifestV1, `{"name":"a","version":"1.0.0","config_schema":"string"}`,
			invalid, "config_schema", "must be an object"},
		{"unknown manifest field", schemas.ManifestV1, `{"name":"a","version":"1.0.0","verison":"1.0.0"}`,
			invalid, "verison", "is not a known field"},
		{"unknown top-level field wins over the missing one", schemas.APIJobDeployRequest, `{"name":"web","version":"1","imgae":"nginx"}`,
			invalid, "imgae", "is not a known field"},
		{"missing image", schemas.APIJobDeployRequest, `{"name":"web","version":"1"}`,
			invalid, "image", `field "image": is required`},
		{"empty image", schemas.APIJobDeployRequest, `{"name":"web","version":"1","image":""}`,
			invalid, "image", ""},
		{"bad env key", schemas.APIJobDeployRequest, `{"name":"web","version":"1","image":"nginx","env":{"OK":"1","1BAD":"x"}}`,
			invalid, "env.1BAD", "is not an allowed key: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"},
		{"env value not a string", schemas.APIJobDeployRequest, `{"name":"web","version":"1","image":"nginx","env":{"PORT":8080}}`,
			invalid, "env.PORT", "must be a string (got a number)"},
		{"job name with a slash", schemas.APIJobDeployRequest, `{"name":"../etc","version":"1","image":"nginx"}`,
			invalid, "name", "must match pattern"},
		{"job name with an empty token", schemas.APIJobRef, `{"name":"web..prod","version":"1"}`,
			invalid, "name", "must match pattern"},
		{"job version too long", schemas.APIJobRef, `{"name":"web","version":"` + strings.Repeat("9", 65) + `"}`,
			invalid, "version", "must be at most 64 characters long"},
		{"empty job ref body", schemas.APIJobRef, ``,
			invalid, "name", "is required"},
		{"wrong severity", schemas.APIAlertFireRequest, `{"severity":"urgent","summary":"x"}`,
			invalid, "severity", `must be one of "info", "warning", "critical" (got "urgent")`},
		{"empty summary", schemas.APIAlertFireRequest, `{"severity":"info","summary":""}`,
			invalid, "summary", "must not be empty"},
		{"wrong type", schemas.APIMachineSetParamRequest, `{"machine":42,"param":"p","value":1}`,
			invalid, "machine", "must be a string (got a number)"},
		{"set param without value", schemas.APIMachineSetParamRequest, `{"machine":"m1","param":"p"}`,
			invalid, "value", "is required"},
		{"bad param name", schemas.APIMachineActionRequest, `{"machine":"m1","command":"increment","params":{"incrementer/step":1,"/abs":2}}`,
			invalid, "params./abs", "is not an allowed key"},
		{"bad plugin name in action", schemas.APIMachineActionRequest, `{"machine":"m1","command":"increment","plugin":"Incrementer"}`,
			invalid, "plugin", "must be lower-case letters"},
		{"bad plugin state filter", schemas.APIPluginListRequest, `{"state":"active"}`,
			invalid, "state", "must be one of"},
		{"plugin page over the bound", schemas.APIPluginListRequest, fmt.Sprintf(`{"limit":%d}`, schemas.MaxPluginPage+1),
			invalid, "limit", "must be at most"},
		{"plugin page after a bad name", schemas.APIPluginListRequest, `{"after":"Audit"}`,
			invalid, "after", ""},
		{"resolved event without resolved_at", schemas.EventAlertResolved, `{"id":"a","severity":"info","summary":"s","status":"resolved","fired_at":"2025-01-01T00:00:00Z"}`,
			invalid, "resolved_at", "is required"},
		{"fired event with the wrong status", schemas.EventAlertFired, `{"id":"a","severity":"info","summary":"s","status":"resolved","fired_at":"2025-01-01T00:00:00Z"}`,
			invalid, "status", `must be "firing" (got "resolved")`},
		{"bad timestamp", schemas.EventJobDeployed, `{"name":"web","version":"1","image":"nginx","deployed_at":"yesterday"}`,
			invalid, "deployed_at", "must be a valid RFC 3339 date-time"},
		{"negative duration_ms", schemas.EventMachineActionCompleted, `{"action_id":"a","machine":"m","command":"c","plugin":"p","status":"succeeded","duration_ms":-1}`,
			invalid, "duration_ms", "must be at least 0"},
		{"error envelope without code", schemas.APIError, `{"message":"x"}`,
			invalid, "code", "is required"},
		{"nested manifest in a record", schemas.APIRegisterResponse, `{"changed":true,"plugin":{"name":"a","version":"1.0.0","state":"ACTIVE","registered_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","manifest":{"name":"a","version":"1.0.0","hooks":[{"hook":"job.pre_delete","timeout":"soon"}]}}}`,
			invalid, "plugin.manifest.hooks[0].timeout", "must match pattern"},
		{"hook list of an unknown hook point", schemas.APIHookListRequest, `{"hook":"job.predeploy"}`,
			invalid, "hook", `must be one of "job.pre_deploy", "job.runtime_env", `},
		{"typo in a hook list request", schemas.APIHookListRequest, `{"hooks":"job.pre_deploy"}`,
			invalid, "hooks", "is not a known field (known fields: hook)"},
		{"hook request without payload", schemas.APIHookRequest, `{"hook":"job.pre_deploy","chain_id":"c","object":"job/web","step":0}`,
			invalid, "payload", "is required"},
		{"hook request payload not an object", schemas.APIHookRequest, `{"hook":"job.pre_deploy","chain_id":"c","object":"job/web","step":0,"payload":"web"}`,
			invalid, "payload", "must be an object (got a string)"},
		{"hook request negative step", schemas.APIHookRequest, `{"hook":"job.pre_deploy","chain_id":"c","object":"job/web","step":-1,"payload":{}}`,
			invalid, "step", "must be at least 0 (got -1)"},
		{"hook request bad object", schemas.APIHookRequest, `{"hook":"job.pre_deploy","chain_id":"c","object":"web","step":0,"payload":{}}`,
			invalid, "object", "must match pattern"},
		{"hook request bad env key", schemas.APIHookRequest, `{"hook":"job.runtime_env","chain_id":"c","object":"job/web","step":1,"payload":{},"env":{"A-B":"x"}}`,
			invalid, "env.A-B", "is not an allowed key"},
		{"hook response bad outcome", schemas.APIHookResponse, `{"outcome":"deny","reason":"no"}`,
			invalid, "outcome", `must be one of "continue", "reject" (got "deny")`},
		{"hook response patch not an object", schemas.APIHookResponse, `{"patch":[{"op":"add","path":"/a","value":1}]}`,
			invalid, "patch", "must be an object (got an array)"},
		{"hook response env value not a string", schemas.APIHookResponse, `{"env":{"PORT":8080}}`,
			invalid, "env.PORT", "must be a string (got a number)"},
		{"hook response bad env key", schemas.APIHookResponse, `{"env":{"1X":"a"}}`,
			invalid, "env.1X", "is not an allowed key"},
		{"hook response fragment not a string", schemas.APIHookResponse, `{"fragment":["RUN x"]}`,
			invalid, "fragment", "must be a string (got an array)"},
		{"hook response bad code", schemas.APIHookResponse, `{"outcome":"reject","reason":"no","code":"Policy Violation"}`,
			invalid, "code", "must match pattern"},
		{"hook step bad failure policy", schemas.APIHookStep, `{"plugin":"p","version":"1.0.0","priority":0,"timeout":"5s","failure_policy":"retry","state":"ACTIVE"}`,
			invalid, "failure_policy", `must be one of "fail", "ignore" (got "retry")`},
		{"hook step without timeout", schemas.APIHookStep, `{"plugin":"p","version":"1.0.0","priority":0,"failure_policy":"fail","state":"ACTIVE"}`,
			invalid, "timeout", "is required"},
		{"hook chain of an unknown hook point", schemas.APIHookListResponse, `{"chains":[{"hook":"job.pre_deploy","steps":[]},{"hook":"job.nope","steps":null}]}`,
			invalid, "chains[1].hook", "must be one of"},
		{"step record bad outcome", schemas.APIStepRecord, `{"plugin":"p","priority":0,"failure_policy":"fail","outcome":"ok","duration_ms":1}`,
			invalid, "outcome", `must be one of "continued", "patched", "rejected", "failed", "ignored", "skipped", "not_reached" (got "ok")`},
		{"step record bad env key", schemas.APIStepRecord, `{"plugin":"p","priority":0,"failure_policy":"fail","outcome":"continued","duration_ms":1,"env_keys":["OK","no way"]}`,
			invalid, "env_keys[1]", "must match pattern"},
		{"chain record without steps", schemas.APIChainRecord, `{"id":"c","hook":"job.pre_deploy","object":"job/web","outcome":"completed","started_at":"2025-01-01T00:00:00Z","duration_ms":1}`,
			invalid, "steps", "is required"},
		{"chain record bad outcome", schemas.APIChainRecord, `{"id":"c","hook":"job.pre_deploy","object":"job/web","outcome":"continued","started_at":"2025-01-01T00:00:00Z","duration_ms":1,"steps":[]}`,
			invalid, "outcome", `must be one of "completed", "rejected", "failed", "empty", "running" (got "continued")`},
		{"chain completed still running", schemas.EventHookChainCompleted, `{"id":"c","hook":"job.pre_deploy","object":"job/web","outcome":"running","started_at":"2025-01-01T00:00:00Z","duration_ms":1,"steps":[]}`,
			invalid, "outcome", `must be one of "completed", "rejected", "failed", "empty" (got "running")`},
		{"chain completed with a bad step", schemas.EventHookChainCompleted, `{"id":"c","hook":"job.pre_deploy","object":"job/web","outcome":"failed","started_at":"2025-01-01T00:00:00Z","duration_ms":1,"steps":[{"plugin":"p","priority":0,"failure_policy":"fail","outcome":"failed","duration_ms":-2}]}`,
			invalid, "steps[0].duration_ms", "must be at least 0 (got -2)"},
		{"job response with a bad chain", schemas.APIJobResponse, `{"job":{"name":"web","version":"1","image":"nginx","status":"deployed","deployed_at":"2025-01-01T00:00:00Z"},"event_id":"e","chains":[{"id":"c","hook":"job.pre_deploy","object":"job/web","outcome":"completed","duration_ms":1,"steps":[]}]}`,
			invalid, "chains[0].started_at", "is required"},
		{"job deployed bad chain id", schemas.EventJobDeployed, `{"name":"web","version":"1","image":"nginx","deployed_at":"2025-01-01T00:00:00Z","chain_ids":["c",""]}`,
			invalid, "chain_ids[1]", "must not be empty"},
		{"job injection not a string", schemas.APIJob, `{"name":"web","version":"1","image":"nginx","status":"deployed","deployed_at":"2025-01-01T00:00:00Z","dockerfile_injection":1}`,
			invalid, "dockerfile_injection", "must be a string (got a number)"},
		{"alert with an unknown status", schemas.APIAlert, `{"id":"a","severity":"info","summary":"s","status":"muted","fired_at":"2025-01-01T00:00:00Z"}`,
			invalid, "status", `must be one of "firing", "resolved", "suppressed" (got "muted")`},
		{"alert response with an empty event id", schemas.APIAlertResponse, `{"alert":{"id":"a","severity":"info","summary":"s","status":"suppressed","fired_at":"2025-01-01T00:00:00Z"},"event_id":""}`,
			invalid, "event_id", "must not be empty"},
		{"machine action response with a bad chain", schemas.APIMachineActionResponse, `{"action_id":"a","machine":"m1","command":"c","plugin":"p","chains":{}}`,
			invalid, "chains", "must be an array (got an object)"},
		{"invalid JSON", schemas.APIJobDeployRequest, `{"name":"web",`,
			bad, "", "the body is not valid JSON"},
		{"trailing data", schemas.APIJobListRequest, `{} {}`,
			bad, "", "the body is not valid JSON"},
		{"not an object", schemas.APIJobDeployRequest, `["web"]`,
			bad, "(root)", "the body must be a JSON object, got an array"},
		{"null body", schemas.APIJobListRequest, `null`,
			bad, "(root)", "got null"},
		{"unknown schema", "api/v1/nope.json", `{}`,
			schemas.CodeInternal, "", `unknown schema "api/v1/nope.json"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := schemas.Validate(tt.path, []byte(tt.doc))
			e := asError(t, err)
			if e.Code != tt.code || e.Field != tt.field {
				t.Fatalf("got code %q field %q, want %q %q (message %q)", e.Code, e.Field, tt.code, tt.field, e.Message)
			}
			if !strings.Contains(e.Message, tt.message) {
				t.Fatalf("message %q does not contain %q", e.Message, tt.message)
			}
			if tt.code == invalid && !strings.HasPrefix(e.Message, `field "`+tt.field+`": `) {
				t.Fatalf("message %q does not start by naming the field", e.Message)
			}
			// Decode refuses the same document and leaves v alone.
			var v map[string]any
			if derr := schemas.Decode(tt.path, []byte(tt.doc), &v); !reflect.DeepEqual(derr, err) || v != nil {
				t.Fatalf("Decode = %v (v %v), want %v", derr, v, err)
			}
		})
	}
}

func TestErrorDetailsListEveryField(t *testing.T) {
	err := schemas.Validate(schemas.APIJobDeployRequest, []byte(`{"name":"Web App","version":"","image":"nginx","lables":{}}`))
	e := asError(t, err)
	list, _ := e.Details["errors"].([]any)
	var fields []string
	for _, d := range list {
		fields = append(fields, d.(map[string]any)["field"].(string))
	}
	want := []string{"lables", "name", "version"}
	for _, f := range want {
		found := false
		for _, g := range fields {
			found = found || g == f
		}
		if !found {
			t.Errorf("Details errors %v lack field %q", fields, f)
		}
	}
	if e.Field != "lables" {
		t.Errorf("Field = %q, want the unknown field first", e.Field)
	}
	// A single problem has no list.
	e = asError(t, schemas.Validate(schemas.APIJobRef, []byte(`{"name":"web"}`)))
	if e.Details != nil {
		t.Errorf("Details = %v, want nil", e.Details)
	}
}

func TestErrorsIs(t *testing.T) {
	invalid := schemas.Validate(schemas.ManifestV1, []byte(`{"name":"X","version":"1.0.0"}`))
	badJSON := schemas.Validate(schemas.ManifestV1, []byte(`{`))
	_, badSchema := schemas.CompileConfigSchema(json.RawMessage(`{"type":1}`))
	cs, err := schemas.CompileConfigSchema(json.RawMessage(`{"required":["url"]}`))
	if err != nil {
		t.Fatal(err)
	}
	badConfig := cs.Validate(nil)
	tests := []struct {
		name   string
		err    error
		is     error
		isNot  error
		wrapIs bool
	}{
		{"invalid field", invalid, schemas.ErrInvalidField, schemas.ErrBadRequest, true},
		{"bad json", badJSON, schemas.ErrBadRequest, schemas.ErrInvalidField, true},
		{"bad config schema", badSchema, schemas.ErrInvalidField, schemas.ErrInternal, true},
		{"bad config", badConfig, schemas.ErrInvalidField, schemas.ErrMissingParam, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.is)
			}
			if errors.Is(tt.err, tt.isNot) {
				t.Errorf("errors.Is(%v, %v) = true", tt.err, tt.isNot)
			}
			wrapped := errors.Join(errors.New("register"), tt.err)
			if !errors.Is(wrapped, tt.is) {
				t.Errorf("errors.Is on a wrapped error = false")
			}
		})
	}
}

func TestDecode(t *testing.T) {
	t.Run("register request", func(t *testing.T) {
		var req schemas.RegisterRequest
		doc := `{"manifest":{"name":"a","version":"1.0.0","events":{"types":["io.plugbus.job.v1.*"],"ack_wait":"1m30s","backoff":["1s","2.5s"]}}}`
		if err := schemas.Decode(schemas.APIRegisterRequest, []byte(doc), &req); err != nil {
			t.Fatal(err)
		}
		if got := req.Manifest.Events.AckWait.D().String(); got != "1m30s" {
			t.Errorf("ack_wait = %s", got)
		}
		if got := req.Manifest.Events.Backoff[1].D().String(); got != "2.5s" {
			t.Errorf("backoff[1] = %s", got)
		}
	})
	t.Run("empty body of an empty request", func(t *testing.T) {
		var req schemas.JobListRequest
		for _, body := range []string{"", " \n", "{}"} {
			if err := schemas.Decode(schemas.APIJobListRequest, []byte(body), &req); err != nil {
				t.Errorf("Decode(%q) = %v", body, err)
			}
		}
	})
	t.Run("duration that overflows", func(t *testing.T) {
		var m schemas.Manifest
		doc := `{"name":"a","version":"1.0.0","hooks":[{"hook":"a.b","timeout":"99999999999999999999h"}]}`
		e := asError(t, schemas.Decode(schemas.ManifestV1, []byte(doc), &m))
		if e.Code != schemas.CodeInvalidField {
			t.Errorf("code = %s", e.Code)
		}
	})
	t.Run("integer that overflows", func(t *testing.T) {
		var m schemas.Manifest
		doc := `{"name":"a","version":"1.0.0","priority":1e30}`
		e := asError(t, schemas.Decode(schemas.ManifestV1, []byte(doc), &m))
		if e.Code != schemas.CodeInvalidField || e.Field != "priority" {
			t.Errorf("got %s %q: %v", e.Code, e.Field, e)
		}
	})
}

func TestValidateValueUnencodable(t *testing.T) {
	e := asError(t, schemas.ValidateValue(schemas.APIConfigRequest, schemas.ConfigRequest{Config: map[string]any{"f": func() {}}}))
	if e.Code != schemas.CodeInternal {
		t.Errorf("code = %s", e.Code)
	}
}

func TestValidateConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	ss := samples()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, s := range ss {
				if err := schemas.ValidateValue(s.path, s.v); err != nil {
					t.Errorf("%s: %v", s.name, err)
				}
				if err := schemas.Validate(s.path, []byte(`{"zz":[1,2,{"a":null}]}`)); err == nil && strictSchemas[s.path] {
					t.Errorf("%s accepted an unknown field", s.name)
				}
			}
		}()
	}
	wg.Wait()
}
