package schemas_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

func startManifest(start string) schemas.Manifest {
	return schemas.Manifest{Name: "backfill", Version: "1.0.0",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}, Start: start}}
}

func TestManifestStart(t *testing.T) {
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	valid := []struct {
		start string
		want  schemas.StartPoint
	}{
		{"", schemas.StartPoint{}},
		{schemas.StartNew, schemas.StartPoint{}},
		{schemas.StartAll, schemas.StartPoint{All: true}},
		{"2025-04-30T08:00:00Z", schemas.StartPoint{Time: time.Date(2025, 4, 30, 8, 0, 0, 0, time.UTC)}},
		{"2025-04-30T10:00:00+02:00", schemas.StartPoint{Time: time.Date(2025, 4, 30, 8, 0, 0, 0, time.UTC)}},
		{"24h", schemas.StartPoint{Time: now.Add(-24 * time.Hour)}},
		{"1h30m", schemas.StartPoint{Time: now.Add(-90 * time.Minute)}},
	}
	for _, c := range valid {
		t.Run("valid "+c.start, func(t *testing.T) {
			m := startManifest(c.start)
			if err := m.Validate(); err != nil {
				t.Fatalf("start %q refused: %v", c.start, err)
			}
			if got := m.Events.StartPoint(now); got.All != c.want.All || !got.Time.Equal(c.want.Time) {
				t.Errorf("StartPoint = %+v, want %+v", got, c.want)
			}
		})
	}
	invalid := []struct{ start, want string }{
		{"yesterday", "RFC 3339"},
		{"2025-13-01T00:00:00Z", "RFC 3339"},
		{"2025-05-01", "RFC 3339"},
		{"-1h", "duration"},
		{"0s", "must be positive"},
		{"ALL", `"all"`},
	}
	for _, c := range invalid {
		t.Run("invalid "+c.start, func(t *testing.T) {
			m := startManifest(c.start)
			err := m.Validate()
			var e *schemas.Error
			if !errors.As(err, &e) {
				t.Fatalf("start %q accepted (err %v)", c.start, err)
			}
			if e.Code != schemas.CodeInvalidField || e.Field != "manifest.events.start" {
				t.Errorf("got %s on %q, want invalid_field on manifest.events.start: %v", e.Code, e.Field, e)
			}
			if !strings.Contains(e.Message, c.want) || !strings.Contains(e.Message, c.start) {
				t.Errorf("message %q does not say %q and name the value", e.Message, c.want)
			}
		})
	}
}
