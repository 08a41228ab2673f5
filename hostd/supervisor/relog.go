package supervisor

import (
	"maps"
	"slices"

	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/internal/logging"
)

// Log field names added by Relog and used in the supervisor's own logs:
// the names every plugbus component uses.
const (
	FieldPlugin    = logging.FieldPlugin
	FieldInstance  = logging.FieldInstance
	FieldHost      = logging.FieldHost
	FieldStream    = logging.FieldStream
	FieldTruncated = "truncated"
)

// Relog returns a line function (for WithLines) that writes each Line to l
// at the child's level, with the child's message and fields (sorted by
// name) plus plugin,
// instance, host and stream. The timestamp is l's own, if it adds one. A
// child field with one of those names is dropped: the supervisor knows
// better. A truncated line gets truncated=true.
func Relog(l zerolog.Logger, plugin, instance, host string) func(Line) {
	l = l.With().Str(FieldPlugin, plugin).Str(FieldInstance, instance).Str(FieldHost, host).Logger()
	return func(line Line) {
		e := l.WithLevel(line.Level)
		if e == nil {
			return
		}
		e.Str(FieldStream, string(line.Stream))
		for _, k := range slices.Sorted(maps.Keys(line.Fields)) {
			switch k {
			case FieldPlugin, FieldInstance, FieldHost, FieldStream:
				continue
			}
			e.Interface(k, line.Fields[k])
		}
		if line.Truncated {
			e.Bool(FieldTruncated, true)
		}
		e.Msg(line.Message)
	}
}
