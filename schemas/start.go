package schemas

import "time"

// StartPoint is where a plugin's new durable consumer begins, as
// EventSubscription.Start asks.
type StartPoint struct {
	// All: from the first event the stream still holds.
	All bool
	// Time, when set: from the first event stored at or after it.
	Time time.Time
	// Neither: only events published after the consumer is created.
}

// StartPoint interprets Start for a consumer created at now: "" and
// StartNew start with new events, StartAll with the oldest the stream
// holds, an RFC 3339 time at that time, and a duration ("24h") that long
// before now. A value Validate rejects counts as StartNew.
func (s *EventSubscription) StartPoint(now time.Time) StartPoint {
	if s == nil {
		return StartPoint{}
	}
	switch s.Start {
	case "", StartNew:
		return StartPoint{}
	case StartAll:
		return StartPoint{All: true}
	}
	if t, err := time.Parse(time.RFC3339, s.Start); err == nil {
		return StartPoint{Time: t}
	}
	if d, err := time.ParseDuration(s.Start); err == nil && d > 0 {
		return StartPoint{Time: now.Add(-d)}
	}
	return StartPoint{}
}
