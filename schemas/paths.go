package schemas

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// Schema file paths, relative to the schemas folder (and to [SchemaFS]).
// The $id of each file is [SchemaBase] + its path (see [SchemaID]); pass a
// path (or that $id) to [Validate] and [Decode].
const (
	// APIDefinitions holds the shared $defs (names, durations, params, ...)
	// that the other schemas reference; it validates no document itself.
	APIDefinitions = "api/v1/definitions.json"

	// ManifestV1 validates a [Manifest].
	ManifestV1 = "manifest/v1/manifest.json"

	// APIError validates an [Error] envelope.
	APIError = "api/v1/error.json"

	// Broker API: plugins.
	APIRegisterRequest         = "api/v1/register_request.json"          // RegisterRequest
	APIRegisterResponse        = "api/v1/register_response.json"         // RegisterResponse
	APIPluginRecord            = "api/v1/plugin_record.json"             // PluginRecord
	APIPluginListRequest       = "api/v1/plugin_list_request.json"       // PluginListRequest
	APIPluginListResponse      = "api/v1/plugin_list_response.json"      // PluginListResponse
	APIPluginGetRequest        = "api/v1/plugin_get_request.json"        // PluginGetRequest
	APIPluginUnregisterRequest = "api/v1/plugin_unregister_request.json" // PluginUnregisterRequest
	APIPluginConfigRequest     = "api/v1/plugin_config_request.json"     // PluginConfigRequest

	// Plugin control (broker → plugin). These accept unknown fields, so a
	// newer broker can talk to an older plugin.
	APIInitRequest    = "api/v1/init_request.json"    // InitRequest
	APIInitResponse   = "api/v1/init_response.json"   // InitResponse
	APIConfigRequest  = "api/v1/config_request.json"  // ConfigRequest
	APIConfigResponse = "api/v1/config_response.json" // ConfigResponse
	APIVerifyRequest  = "api/v1/verify_request.json"  // VerifyRequest
	APIVerifyResponse = "api/v1/verify_response.json" // VerifyResponse
	APIActionRequest  = "api/v1/action_request.json"  // ActionRequest
	APIActionResponse = "api/v1/action_response.json" // ActionResponse

	// Broker API: jobs.
	APIJob              = "api/v1/job.json"                // Job
	APIJobDeployRequest = "api/v1/job_deploy_request.json" // JobDeployRequest
	APIJobRef           = "api/v1/job_ref.json"            // JobRef
	APIJobResponse      = "api/v1/job_response.json"       // JobResponse
	APIJobListRequest   = "api/v1/job_list_request.json"   // JobListRequest
	APIJobListResponse  = "api/v1/job_list_response.json"  // JobListResponse

	// Broker API: machines.
	APIMachine                = "api/v1/machine.json"                   // Machine
	APIMachineRef             = "api/v1/machine_ref.json"               // MachineRef
	APIMachineListRequest     = "api/v1/machine_list_request.json"      // MachineListRequest
	APIMachineListResponse    = "api/v1/machine_list_response.json"     // MachineListResponse
	APIMachineSetParamRequest = "api/v1/machine_set_param_request.json" // MachineSetParamRequest
	APIMachineActionRequest   = "api/v1/machine_action_request.json"    // MachineActionRequest
	APIMachineActionResponse  = "api/v1/machine_action_response.json"   // MachineActionResponse

	// Broker API: alerts.
	APIAlert            = "api/v1/alert.json"              // Alert
	APIAlertFireRequest = "api/v1/alert_fire_request.json" // AlertFireRequest
	APIAlertRef         = "api/v1/alert_ref.json"          // AlertRef
	APIAlertResponse    = "api/v1/alert_response.json"     // AlertResponse

	// Hook chains: the broker → plugin step call, the chains as they will
	// run (hooks.list) and the record of a chain run.
	APIHookRequest      = "api/v1/hook_request.json"       // HookRequest
	APIHookResponse     = "api/v1/hook_response.json"      // HookResponse
	APIHookStep         = "api/v1/hook_step.json"          // HookStep
	APIHookChain        = "api/v1/hook_chain.json"         // HookChain
	APIHookListRequest  = "api/v1/hook_list_request.json"  // HookListRequest
	APIHookListResponse = "api/v1/hook_list_response.json" // HookListResponse
	APIStepRecord       = "api/v1/step_record.json"        // StepRecord
	APIChainRecord      = "api/v1/chain_record.json"       // ChainRecord

	// Core event data; each equals EventSchemaPath of its event type.
	EventJobDeployed            = "events/job/v1/deployed.json"             // JobDeployedData
	EventJobDeleted             = "events/job/v1/deleted.json"              // JobDeletedData
	EventMachineActionRequested = "events/machine/v1/action_requested.json" // MachineActionRequestedData
	EventMachineActionCompleted = "events/machine/v1/action_completed.json" // MachineActionCompletedData
	EventAlertFired             = "events/alert/v1/fired.json"              // Alert (status "firing")
	EventAlertResolved          = "events/alert/v1/resolved.json"           // Alert (status "resolved", resolved_at set)
	EventPluginRegistered       = "events/plugin/v1/registered.json"        // PluginRegisteredData
	EventPluginUnregistered     = "events/plugin/v1/unregistered.json"      // PluginUnregisteredData
	EventPluginStateChanged     = "events/plugin/v1/state_changed.json"     // PluginStateChangedData
	EventHookChainCompleted     = "events/hook/v1/chain_completed.json"     // ChainRecord
)

//go:embed api events manifest hostd
var schemaFiles embed.FS

// SchemaFS returns the embedded schema files, laid out as in the schemas
// folder ("manifest/v1/manifest.json", ...). It is read-only.
func SchemaFS() fs.FS { return schemaFiles }

// SchemaPaths returns the path of every embedded schema file, sorted.
func SchemaPaths() []string {
	var paths []string
	_ = fs.WalkDir(schemaFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			paths = append(paths, p)
		}
		return err
	})
	sort.Strings(paths)
	return paths
}

// SchemaID returns the $id of the schema file at path:
// "manifest/v1/manifest.json" -> "https://plugbus.io/schemas/manifest/v1/manifest.json".
// It is what a CloudEvent's dataschema carries.
func SchemaID(path string) string { return SchemaBase + path }
