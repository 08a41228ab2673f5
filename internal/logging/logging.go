// Package logging builds the zerolog loggers of plugbus binaries: console
// output on a terminal, JSON otherwise, with a level from flags.
package logging

import (
	"fmt"
	"io"
	"os"
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

// New returns a logger writing to w in format ("console", "json" or "" for
// console on a terminal, JSON otherwise) at level ("trace", "debug", "info",
// "warn", "error"; "" means info).
func New(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if level != "" {
		l, err := zerolog.ParseLevel(level)
		if err != nil {
			return zerolog.Nop(), fmt.Errorf("log level %q: use trace, debug, info, warn or error", level)
		}
		lvl = l
	}
	switch format {
	case FormatAuto:
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = FormatConsole
		} else {
			format = FormatJSON
		}
	case FormatConsole, FormatJSON:
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: use console or json", format)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	if format == FormatConsole {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
