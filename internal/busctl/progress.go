package busctl

import (
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

// progress returns a progress bar on stderr for total items of work
// described by what, when a person watches: the output is a table and
// stdout and stderr are terminals, and there is enough work to wait for.
// Otherwise (-o json or yaml, output to a file or a pipe) it shows
// nothing.
func (a *app) progress(total uint64, what string) progress {
	if a.output != outputTable || total < progressMin || !terminal(a.stdout) || !terminal(a.stderr) {
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
