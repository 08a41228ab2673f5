package sdk

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
)

// BenchmarkValidateData measures the schema check every core event goes
// through before its handler (the cost quoted on validateData).
func BenchmarkValidateData(b *testing.B) {
	alert := schemas.Alert{ID: "disk-full-m1", Severity: schemas.SeverityCritical, Summary: "disk /var is 97% full on m1",
		Status: schemas.AlertFiring, Labels: map[string]string{"host": "m1", "zone": "b", "team": "ops"}, FiredAt: time.Now().UTC()}
	data, err := json.Marshal(alert)
	if err != nil {
		b.Fatal(err)
	}
	e := event.New()
	e.SetID("ev-1")
	e.SetSource("/plugbus/broker")
	e.SetType(schemas.TypeAlertFired)
	e.DataEncoded = data
	if err := validateData(&e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := validateData(&e); err != nil {
			b.Fatal(err)
		}
	}
}

// Only core types are checked: a plugin's own type has no schema.
func TestValidateDataSkipsOtherTypes(t *testing.T) {
	e := event.New()
	e.SetType("io.plugbus.plugin.other.thing.v1.done")
	e.DataEncoded = []byte("not json at all")
	if err := validateData(&e); err != nil {
		t.Errorf("plugin event checked: %v", err)
	}
	e.SetType(schemas.TypeJobDeployed)
	if err := validateData(&e); err == nil {
		t.Error("a core event with data that is not JSON passed")
	}
	for _, typ := range schemas.CoreEventTypes {
		if _, ok := coreSchemas[typ]; !ok {
			t.Errorf("no schema for core type %s", typ)
		}
	}
}
