// Package logging is the one logging setup of every plugbus process (the
// broker, hostd, busctl's helpers and every plugin through the SDK): zerolog,
// console output on a terminal and JSON otherwise, the same timestamps
// everywhere, and one set of field names (fields.go). It changes no zerolog
// global, so a plugin author's own logging setup is left alone.
package logging

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Formats accepted by New.
const (
	FormatAuto    = ""
	FormatConsole = "console"
	FormatJSON    = "json"
)

// Errors of New, so a command line can name its own flag.
var (
	ErrLevel  = errors.New("invalid log level")
	ErrFormat = errors.New("invalid log format")
)

// TimeFormat is how JSON logs write their time: RFC 3339 in UTC with
// milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// ConsoleTimeFormat is how console logs show the time.
const ConsoleTimeFormat = "15:04:05.000"

// New returns a logger writing to w in format ("console", "json" or "" for
// console on a terminal, JSON otherwise) at level ("trace", "debug",
// "info", "warn", "error"; "" means info).
func New(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(level))
		if err != nil || l == zerolog.NoLevel {
			return zerolog.Nop(), fmt.Errorf("%w %q: use trace, debug, info, warn or error", ErrLevel, level)
		}
		lvl = l
	}
	terminal := false
	if f, ok := w.(*os.File); ok {
		terminal = isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
	}
	switch format {
	case FormatAuto:
		format = FormatJSON
		if terminal {
			format = FormatConsole
		}
	case FormatConsole, FormatJSON:
	default:
		return zerolog.Nop(), fmt.Errorf("%w %q: use console or json", ErrFormat, format)
	}
	if format == FormatConsole {
		// Colours only on a terminal.
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: ConsoleTimeFormat, NoColor: !terminal}
	}
	return zerolog.New(w).Level(lvl).Hook(timeHook{}), nil
}

// timeHook stamps each event with TimeFormat without touching zerolog's
// global time format.
type timeHook struct{}

func (timeHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format(TimeFormat))
}
