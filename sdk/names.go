package sdk

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "plugbus"

// ServiceName returns the NATS micro service name of a plugin's instances:
// "plugbus-" + name. The broker pings "$SRV.PING.<ServiceName>".
func ServiceName(plugin string) string { return "plugbus-" + plugin }

// MetadataPlugin is the micro service metadata key that carries the plugin name.
const MetadataPlugin = "plugbus.plugin"
