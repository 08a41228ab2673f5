package broker

import (
	"errors"
	"slices"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

func TestReplayFilters(t *testing.T) {
	subscribed := []string{"io.plugbus.alert.v1.*", schemas.TypeJobDeployed, "com.example.billing.v2.invoice_paid"}
	tests := []struct {
		name         string
		asked        []string
		types, filts []string
		badField     string
	}{
		{"all subscribed", nil, subscribed,
			[]string{"plugbus.evt.alert.v1.*", "plugbus.evt.job.v1.deployed", "plugbus.evt.com.example.billing.v2.invoice_paid"}, ""},
		{"one type under a wildcard", []string{schemas.TypeAlertFired}, []string{schemas.TypeAlertFired},
			[]string{"plugbus.evt.alert.v1.fired"}, ""},
		{"the wildcard itself", []string{"io.plugbus.alert.v1.*"}, []string{"io.plugbus.alert.v1.*"}, []string{"plugbus.evt.alert.v1.*"}, ""},
		{"overlapping asks keep the wider", []string{schemas.TypeAlertFired, "io.plugbus.alert.v1.*"},
			[]string{schemas.TypeAlertFired, "io.plugbus.alert.v1.*"}, []string{"plugbus.evt.alert.v1.*"}, ""},
		{"not consumed", []string{schemas.TypeJobDeployed, schemas.TypeJobDeleted}, nil, nil, "types[1]"},
		{"wider than consumed", []string{"io.plugbus.job.v1.*"}, nil, nil, "types[0]"},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			types, filters, err := replayFilters("plugbus", "p", subscribed, c.asked)
			if c.badField != "" {
				var e *schemas.Error
				if !errors.As(err, &e) || e.Code != schemas.CodeInvalidField || e.Field != c.badField {
					t.Fatalf("err = %v, want invalid_field on %s", err, c.badField)
				}
				return
			}
			if err != nil || !slices.Equal(types, c.types) || !slices.Equal(filters, c.filts) {
				t.Errorf("got %v %v %v, want %v %v", types, filters, err, c.types, c.filts)
			}
		})
	}
}

func TestReplayDone(t *testing.T) {
	for _, c := range []struct {
		floor, until, pending, ackPending uint64
		done                              bool
	}{
		{10, 10, 5, 0, true}, // acked up to the last; newer events pending
		{12, 10, 0, 1, true}, // past it
		{9, 10, 0, 1, false}, // one delivery not acknowledged
		{7, 10, 2, 0, false}, // not all delivered
		{7, 10, 0, 0, true},  // nothing left: the last events were not the replay's types
		{0, 10, 3, 0, false}, // not started
	} {
		if got := schemas.ReplayDone(c.floor, c.until, c.pending, c.ackPending); got != c.done {
			t.Errorf("%+v: done = %v", c, got)
		}
	}
}
