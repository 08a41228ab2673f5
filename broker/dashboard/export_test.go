package dashboard

// HoldStreams cuts every open live stream of d and holds new ones until
// release is called: a network cut on demand.
func HoldStreams(d *Dashboard) (release func()) { return d.holdStreams() }

// OpenStreams counts d's open live streams.
func OpenStreams(d *Dashboard) int { return d.openStreams() }
