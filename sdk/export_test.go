package sdk

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
