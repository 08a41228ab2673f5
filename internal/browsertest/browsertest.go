// Package browsertest drives a real, headless Chromium from Go tests
// (chromedp): one browser per test binary, shared by its tests, a tab per
// test that records console errors and uncaught exceptions, bounded waits
// on DOM conditions, and screenshots saved as artifacts.
//
// The browser is Debian's chromium (.ci/run installs it), found at
// $CHROMIUM, /usr/bin/chromium or on $PATH. Without it a test skips, except
// under CI ($CI set), where it fails: CI must run the browser tests.
//
// Use it from TestMain so the browser stops when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultWait bounds a Page's waits unless a test gives its own bound.
const DefaultWait = 10 * time.Second

// startTimeout bounds starting the browser.
const startTimeout = 60 * time.Second

var shared struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
	dir    string
}

// Main runs the tests and then stops the shared browser; return its
// result from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	return code
}

// Path returns the Chromium binary the tests use, "" when there is none.
func Path() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts the shared browser on first use.
func browser(t testing.TB) context.Context {
	t.Helper()
	path := Path()
	if path == "" {
		t.Fatal("browsertest: no chromium: install it (apt-get install -y chromium; .ci/run does) or set $CHROMIUM")
	}
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "plugbus-chromium-")
		if shared.err != nil {
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.UserDataDir(shared.dir),
			chromedp.WindowSize(1440, 900),
			// No network beyond the machine: nothing may try to reach out.
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("no-first-run", true),
		)
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelBrowser := chromedp.NewContext(actx)
		shared.cancel = func() { cancelBrowser(); cancelAlloc() }
		sctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		// The first action starts the browser; its context must not
		// end (it would stop the browser), so the start is bounded from
		// outside.
		started := make(chan error, 1)
		go func() { started <- chromedp.Do(bctx) }()
		var err error
		select {
		case err = <-started:
		case <-sctx.Done():
			err = sctx.Err()
		}
		if err != nil {
			shared.cancel()
			shared.err = fmt.Errorf("start %s: %w", path, err)
			return
		}
		shared.ctx = bctx
	})
	if shared.err != nil {
		t.Fatalf("browsertest: %v", shared.err)
	}
	return shared.ctx
}

// Page is one tab.
type Page struct {
	t   testing.TB
	ctx context.Context

	mu     sync.Mutex
	errors []string
}

// NewPage opens a tab in the shared browser, closed when the test ends.
// It records console errors, failed loads and uncaught exceptions
// (ConsoleErrors), and saves a screenshot of the tab as it is at the end
// of the test to ArtifactsDir()/TEST.png.
func NewPage(t testing.TB) *Page {
	t.Helper()
	bctx := browser(t)
	ctx, cancel := chromedp.NewContext(bctx)
	p := &Page{t: t, ctx: ctx}
	// Subscribing opens the tab, so nothing the page says is missed.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				where := m.URL
				if where != "" {
					where = fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
				}
				p.record(m.String() + where)
			}
		}
	}()
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browsertest: open a tab: %v", err)
	}
	t.Cleanup(func() {
		p.Screenshot(sanitize(t.Name()))
		cancel()
	})
	return p
}

func (p *Page) record(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errors = append(p.errors, s)
}

// ConsoleErrors returns what went wrong in the page so far.
func (p *Page) ConsoleErrors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errors...)
}

// NoConsoleErrors fails the test if the page logged an error, failed to
// load a resource or threw.
func (p *Page) NoConsoleErrors() {
	p.t.Helper()
	if errs := p.ConsoleErrors(); len(errs) > 0 {
		p.t.Errorf("browsertest: the page had %d error(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
}

// Do runs actions with a bound of DefaultWait, failing the test on error.
func (p *Page) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, DefaultWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browsertest: %s: %v", what, err)
	}
}

// Navigate loads url and waits for the document to load.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	p.Do("navigate to "+url, chromedp.Navigate(url))
}

// Eval evaluates a JavaScript expression (awaiting a promise) and
// decodes its value.
func Eval[T any](p *Page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, DefaultWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("browsertest: evaluate %s: %v", expr, err)
	}
	return v
}

// WaitTrue waits until a JavaScript expression is true, within bound,
// failing the test (with what and the page's errors) otherwise. It polls
// in the page, on every animation frame.
func (p *Page) WaitTrue(what, expr string, bound time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, bound)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(0))); err != nil {
		tctx, tcancel := context.WithTimeout(p.ctx, 2*time.Second)
		got, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		tcancel()
		p.t.Fatalf("browsertest: %s: not within %s (%v)\npage text:\n%s\npage errors: %v", what, bound, err, got, p.ConsoleErrors())
	}
	return time.Since(start)
}

// Click clicks the first element matching a CSS selector.
func (p *Page) Click(sel string) {
	p.t.Helper()
	p.Do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// Screenshot saves the whole page to ArtifactsDir()/name.png and returns
// the file, "" when it could not (reported, not fatal).
func (p *Page) Screenshot(name string) string {
	ctx, cancel := context.WithTimeout(p.ctx, DefaultWait)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			p.t.Logf("browsertest: screenshot %s: %v", name, err)
		}
		return ""
	}
	return p.save(name, buf)
}

// ScreenshotTo saves the viewport, resized to width × height CSS pixels,
// to path.
func (p *Page) ScreenshotTo(path string, width, height int64) {
	p.t.Helper()
	p.Do("resize for "+path, chromedp.EmulateViewport(width, height),
		chromedp.Evaluate[chromedp.Void](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))`, chromedp.EvalAwaitPromise))
	ctx, cancel := context.WithTimeout(p.ctx, DefaultWait)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("browsertest: screenshot %s: %v", path, err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Fatalf("browsertest: %v", err)
	}
}

func (p *Page) save(name string, buf []byte) string {
	dir := ArtifactsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Logf("browsertest: %v", err)
		return ""
	}
	f := filepath.Join(dir, name+".png")
	if err := os.WriteFile(f, buf, 0o644); err != nil {
		p.t.Logf("browsertest: %v", err)
		return ""
	}
	p.t.Logf("browsertest: screenshot %s", f)
	return f
}

// Context returns the tab's context, for chromedp actions of a test's own.
func (p *Page) Context() context.Context { return p.ctx }

// ArtifactsDir is where screenshots go: $PLUGBUS_ARTIFACTS, else
// bin/dashboard-screenshots in the repository.
func ArtifactsDir() string {
	if d := os.Getenv("PLUGBUS_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin", "dashboard-screenshots")
}

// RepoRoot is the directory of the module's go.mod, found from the
// working directory up.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
}

// SetInput sets the value of the input matching a CSS selector as typing
// would: the page gets an input event.
func SetInput(sel, value string) chromedp.Action[chromedp.Void] {
	s, _ := json.Marshal(sel)
	v, _ := json.Marshal(value)
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(e => { e.value = %s; e.dispatchEvent(new Event('input', {bubbles: true})); })(document.querySelector(%s))`, v, s))
}
