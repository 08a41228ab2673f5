package plugintest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/plugintest"
)

// A new plugin's events.start decides which past events it gets: all the
// stream holds, those from a time (or a duration back), or none; and it
// gets every new one after them either way.
func TestManifestStart(t *testing.T) {
	bus := plugintest.Start(t)
	past := []string{fireAlert(t, bus, "p1"), fireAlert(t, bus, "p2"), fireAlert(t, bus, "p3")}
	// The time the second past alert was stored.
	s, err := bus.JetStream().Stream(t.Context(), schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	var second time.Time
	for seq := uint64(1); second.IsZero(); seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("find the second alert: %v", err)
		}
		if m.Header.Get("ce-id") == past[1] {
			second = m.Time
		}
	}

	cases := []struct {
		name, start string
		want        []string
	}{
		{"all", schemas.StartAll, past},
		{"time", second.Format(time.RFC3339Nano), past[1:]},
		{"duration", "1h", past},
		{"new", schemas.StartNew, nil},
		{"default", "", nil},
	}
	var recs []*recorder
	for _, c := range cases {
		r := newRecorder(t, bus, "start-"+c.name, c.start, schemas.TypeAlertFired)
		bus.StartPlugin(t, r.p)
		recs = append(recs, r)
	}
	fresh := fireAlert(t, bus, "fresh")
	for i, c := range cases {
		r := recs[i]
		bus.WaitFor(t, func() bool { return r.has(fresh) })
		if got, want := r.ids(false), append(slices.Clone(c.want), fresh); !slices.Equal(got, want) {
			t.Errorf("start %q: got %v, want %v", c.start, got, want)
		}
	}
}
