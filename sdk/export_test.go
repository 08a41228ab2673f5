package sdk

import "time"

// RunMain exposes runMain to the external tests.
var RunMain = runMain

// DeliveryLimit returns the consumer's max deliver as the instance last
// read it (0 before it consumes).
func (p *Plugin) DeliveryLimit() int {
	if s := p.settings.Load(); s != nil {
		return s.maxDeliver
	}
	return 0
}

// SetClock makes a HookAnswers read the time from now.
func (a *HookAnswers) SetClock(now func() time.Time) { a.now = now }

// Waiting is how many repeats wait for a first call now.
func (a *HookAnswers) Waiting() int64 { return a.waiting.Load() }
