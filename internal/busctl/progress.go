package busctl

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// progressMin is the least work (events read, dead letters replayed) that
// shows a progress bar.
const progressMin = 200

// terminal reports whether w is a terminal. Tests replace it.
var terminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progress shows how far long work has got.
type progress interface {
	// Add counts n more items done.
	Add(n int)
	// Finish clears the bar.
	Finish()
}

type noProgress struct{}

func (noProgress) Add(int) {}
func (noProgress) Finish() {}

type bar struct {
	b    *progressbar.ProgressBar
	done bool
}

func (b *bar) Add(n int) {
	if !b.done {
		_ = b.b.Add(n)
	}
}

func (b *bar) Finish() {
	if !b.done {
		b.done = true
		_ = b.b.Finish()
	}
}

// watched reports whether a person watches busctl: the output is a table
// and stdout and stderr are terminals. Progress bars show only then, never
// with -o json or yaml or with output to a file or a pipe.
func (a *app) watched() bool {
	return a.output == outputTable && terminal(a.stdout) && terminal(a.stderr)
}

// progress returns a progress bar on stderr for total items of work
// described by what, when a person watches (see watched) and there is
// enough work to wait for. Otherwise it shows nothing.
func (a *app) progress(total uint64, what string) progress {
	if total < progressMin || !a.watched() {
		return noProgress{}
	}
	return &bar{b: progressbar.NewOptions64(int64(min(total, 1<<62)),
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)}
}

// lineBar draws a line of progress on stderr, in place, for work that
// reports how far it has got (a replay, an action); it draws nothing
// unless a person watches (see watched).
type lineBar struct {
	w     io.Writer // nil: off
	drawn bool
}

func (a *app) lineBar() *lineBar {
	if !a.watched() {
		return &lineBar{}
	}
	return &lineBar{w: a.stderr}
}

// on reports whether the bar draws.
func (b *lineBar) on() bool { return b.w != nil }

// draw replaces the bar's line with line.
func (b *lineBar) draw(line string) {
	if b.w == nil {
		return
	}
	fmt.Fprintf(b.w, "\r\033[K%s", line)
	b.drawn = true
}

// clear erases the bar, so a message can take its line.
func (b *lineBar) clear() {
	if b.w != nil && b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
		b.drawn = false
	}
}

// finish leaves the last bar drawn and ends its line.
func (b *lineBar) finish() {
	if b.w != nil && b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}
