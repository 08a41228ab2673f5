package broker

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
)

// NewEvent builds what event.New and its setters build for the same
// attributes and data, for core types and for one without a schema.
func TestNewEventMatchesSetters(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, tt := range []struct {
		typ  string
		data any
	}{
		{schemas.TypeJobDeployed, schemas.JobDeployedData{Name: "web", Version: "1", Image: "nginx <&>", DeployedAt: when}},
		{schemas.TypeHookChainCompleted, schemas.ChainRecord{ID: "c", Hook: schemas.HookJobPreDeploy, Steps: []schemas.StepRecord{{Plugin: "p"}}}},
		{schemas.TypeAlertFired, json.RawMessage(`{"id":"a", "severity":"info"}`)},
		{"io.plugbus.plugin.audit.v1.noted", map[string]any{"n": 1}},
		{schemas.TypePluginRegistered, nil},
	} {
		got, err := NewEvent(tt.typ, tt.data, WithID("id-1"), withTime(when), WithSubject("job/web"))
		if err != nil {
			t.Fatal(err)
		}
		want := event.New()
		want.SetID("id-1")
		if err := want.Context.SetSource(Source); err != nil {
			t.Fatal(err)
		}
		want.SetType(tt.typ)
		want.SetTime(when)
		want.SetDataSchema(schemas.EventSchemaID(tt.typ))
		want.SetSubject("job/web")
		if err := want.SetData(event.ApplicationJSON, tt.data); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%s:\nNewEvent %s\nsetters  %s", tt.typ, got, want.String())
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", tt.typ, err)
		}
	}
}
