package schemas

import (
	"encoding/json"
	"io/fs"
	"sort"
	"strings"
	"testing"
)

// allPaths lists every path constant; the test checks it against the files.
var allPaths = []string{
	APIDefinitions, ManifestV1, APIError,
	APIRegisterRequest, APIRegisterResponse, APIPluginRecord, APIPluginListRequest, APIPluginListResponse,
	APIPluginGetRequest, APIPluginConfigRequest, APIPluginUnregisterRequest,
	APIInitRequest, APIInitResponse, APIConfigRequest, APIConfigResponse, APIVerifyRequest, APIVerifyResponse,
	APIActionRequest, APIActionResponse,
	APIJob, APIJobDeployRequest, APIJobRef, APIJobResponse, APIJobListRequest, APIJobListResponse,
	APIMachine, APIMachineRef, APIMachineListRequest, APIMachineListResponse, APIMachineSetParamRequest,
	APIMachineActionRequest, APIMachineActionResponse,
	APIAlert, APIAlertFireRequest, APIAlertRef, APIAlertResponse,
	APIHookRequest, APIHookResponse, APIHookStep, APIHookChain, APIHookListRequest, APIHookListResponse,
	APIStepRecord, APIChainRecord,
	EventJobDeployed, EventJobDeleted, EventMachineActionRequested, EventMachineActionCompleted,
	EventAlertFired, EventAlertResolved, EventPluginRegistered, EventPluginStateChanged, EventPluginUnregistered,
	EventHookChainCompleted,
	APIPluginInstance, APIHost, APIHostRef, APIHostListRequest, APIHostListResponse, APIHostControl,
	APIPluginHostRequest, APIPluginHostResponse, APILogRecord, EventHostStateChanged, HostdConfigV1,
	APICredsRequest, APIHostCredsRequest, APICredsResponse, APIRevokeResponse, EventIdentityIssued, EventIdentityRevoked,
	APIStreamReadRequest, APIStreamReadResponse, APIStreamStopRequest, APIStreamStopResponse,
	APIAlertListRequest, APIAlertListResponse, APIEventGetRequest, APIStoredMessage,
	APIDLQListRequest, APIDLQListResponse, APIDLQRef, APIDeadLetter, APIDLQReplayRecord, APIDLQReplayRequest,
	APIDLQReplayResponse, APIDLQPurgeRequest, APIDLQPurgeResponse,
	APIPluginReplayRequest, APIReplayStatus, APIReplayNotice,
	APIAlertmanagerWebhook, APIAlertIntakeRequest, APIAlertIntakeResponse,
	APIChainGetRequest, APIChainStatus, APIChainListRequest, APIChainListResponse,
	APIActionRecord, APIActionRef, APIActionListRequest, APIActionListResponse, APIActionCancelRequest, APIActionCancelResponse,
	APIActionProgressRequest, APIActionCompleteRequest, APIActionReportResponse, APIActionCancelNotice, APIActionCancelNoticeReply,
	EventMachineActionProgress,
}

func TestEmbeddedSchemasCompile(t *testing.T) {
	paths := SchemaPaths()
	if len(paths) == 0 {
		t.Fatal("no embedded schemas")
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			b, err := fs.ReadFile(SchemaFS(), p)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Schema string `json:"$schema"`
				ID     string `json:"$id"`
				Title  string `json:"title"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.ID != SchemaBase+p || doc.ID != SchemaID(p) {
				t.Errorf("$id = %q, want %q", doc.ID, SchemaBase+p)
			}
			if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %q, want draft 2020-12", doc.Schema)
			}
			if doc.Title == "" {
				t.Error("no title")
			}
			if _, err := compiled(p); err != nil {
				t.Fatalf("does not compile: %v", err)
			}
			// Every $ref is absolute into plugbus or local to the file.
			for _, ref := range refs(t, b) {
				if !strings.HasPrefix(ref, SchemaBase) && !strings.HasPrefix(ref, "#") {
					t.Errorf("$ref %q is neither a plugbus $id nor local", ref)
				}
			}
		})
	}
}

func refs(t *testing.T, b []byte) []string {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

func TestPathConstantsMatchFiles(t *testing.T) {
	want := append([]string(nil), allPaths...)
	sort.Strings(want)
	got := SchemaPaths()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("embedded files:\n%s\npath constants:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEventSchemaPaths(t *testing.T) {
	want := map[string]string{
		TypeJobDeployed:            EventJobDeployed,
		TypeJobDeleted:             EventJobDeleted,
		TypeMachineActionRequested: EventMachineActionRequested,
		TypeMachineActionCompleted: EventMachineActionCompleted,
		TypeMachineActionProgress:  EventMachineActionProgress,
		TypeAlertFired:             EventAlertFired,
		TypeAlertResolved:          EventAlertResolved,
		TypePluginRegistered:       EventPluginRegistered,
		TypePluginUnregistered:     EventPluginUnregistered,
		TypePluginStateChanged:     EventPluginStateChanged,
		TypeHookChainCompleted:     EventHookChainCompleted,
		TypeHostStateChanged:       EventHostStateChanged,
		TypeIdentityIssued:         EventIdentityIssued,
		TypeIdentityRevoked:        EventIdentityRevoked,
	}
	if len(want) != len(CoreEventTypes) {
		t.Fatalf("%d core event types, %d event schemas", len(CoreEventTypes), len(want))
	}
	for _, typ := range CoreEventTypes {
		t.Run(typ, func(t *testing.T) {
			p, ok := want[typ]
			if !ok {
				t.Fatal("no schema constant")
			}
			if EventSchemaPath(typ) != p {
				t.Errorf("EventSchemaPath = %q, constant = %q", EventSchemaPath(typ), p)
			}
			b, err := fs.ReadFile(SchemaFS(), EventSchemaPath(typ))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				ID    string `json:"$id"`
				Title string `json:"title"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.ID != EventSchemaID(typ) {
				t.Errorf("$id = %q, want EventSchemaID = %q", doc.ID, EventSchemaID(typ))
			}
			if doc.Title != typ {
				t.Errorf("title = %q, want the event type", doc.Title)
			}
		})
	}
}

// TestHookPointsMatchSchema keeps the hook_point enum of the shared
// definitions and HookPoints (and HookKind) in step.
func TestHookPointsMatchSchema(t *testing.T) {
	b, err := fs.ReadFile(SchemaFS(), APIDefinitions)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs map[string]struct {
			Enum []string `json:"enum"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Defs["hook_point"].Enum
	if strings.Join(got, " ") != strings.Join(HookPoints, " ") {
		t.Errorf("hook_point enum %v, HookPoints %v", got, HookPoints)
	}
	for _, h := range HookPoints {
		if HookKind(h) == "" {
			t.Errorf("hook point %s has no kind", h)
		}
	}
}
