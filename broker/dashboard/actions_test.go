package dashboard_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/internal/browsertest"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// flasher is a plugin with a long machine action, "flash": it reports
// progress, then works until it is cancelled (told on cancelled).
func flasher(t *testing.T, cancelled chan<- error) *sdk.Plugin {
	t.Helper()
	m := schemas.Manifest{
		Name: "flasher", Version: "1.0.0", Description: "a long action", Category: "test",
		Actions: []schemas.ActionSpec{{Command: "flash", Model: "machines", Timeout: schemas.Duration(time.Minute)}},
	}
	p, err := sdk.New(m, sdk.WithLogger(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	p.HandleAction("flash", func(ctx context.Context, a *sdk.Action) (any, error) {
		if err := p.Progress(ctx, 10, "erasing"); err != nil {
			return nil, err
		}
		if err := p.Progress(ctx, 40, "flashed block 2 of 5"); err != nil {
			return nil, err
		}
		<-ctx.Done()
		cancelled <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	})
	return p
}

// The actions page shows a long action live with its progress; a reader
// gets no cancel button (and the action endpoint refuses one), the admin
// cancels it from the page and the plugin's handler sees its context
// cancelled with the reason.
func TestBrowserActionsProgressAndCancel(t *testing.T) {
	bs := startBus(t)
	cancelled := make(chan error, 1)
	bs.startPlugin(t, flasher(t, cancelled))

	p := browsertest.NewPage(t)
	p.Navigate(bs.base + "/actions")
	p.WaitTrue("the page is empty and live", `document.querySelector('#fragment').textContent.includes('No actions yet') && document.querySelector('#live').dataset.state === 'live'`, browsertest.DefaultWait)

	res, err := bs.api.MachineAction(ctxT(t), schemas.MachineActionRequest{Machine: "rack-7", Command: "flash", NoWait: true})
	if err != nil {
		t.Fatal(err)
	}
	row := `document.querySelector('tr[data-action-id="` + res.ActionID + `"]')`
	p.WaitTrue("the running action and its progress are shown (live)", row+` !== null && `+row+`.dataset.status === 'running' && `+
		row+`.querySelector('progress') !== null && `+row+`.querySelector('progress').value === 40 && `+row+`.textContent.includes('flashed block 2 of 5') && `+
		row+`.textContent.includes('rack-7') && `+row+`.textContent.includes('flasher')`, browsertest.DefaultWait)
	if browsertest.Eval[bool](p, `document.querySelector('button.cancel, meta[name="csrf-token"]') !== null`) {
		t.Error("a reader sees a cancel button or a CSRF token")
	}
	if code, _ := bs.post(t, "/dash/action/actions/"+res.ActionID+"/cancel", nil, map[string]string{"Origin": bs.base}); code != http.StatusForbidden {
		t.Errorf("cancel without the admin's credentials: %d, want 403", code)
	}
	p.NoConsoleErrors()

	p.Navigate(bs.loginURL(t, "/actions"))
	p.WaitTrue("the admin gets the cancel button", row+` !== null && `+row+`.querySelector('button.cancel') !== null`, browsertest.DefaultWait)
	p.Click(`tr[data-action-id="` + res.ActionID + `"] button.cancel`)
	p.WaitTrue("the cancel is done and shown", `document.querySelector('#flash').textContent.includes('action `+res.ActionID+` cancelled; the plugin was told') && `+
		row+`.dataset.status === 'cancelled' && `+row+`.querySelector('button.cancel') === null && `+row+`.textContent.includes('cancelled from the dashboard')`,
		browsertest.DefaultWait)
	select {
	case cause := <-cancelled:
		if cause == nil || !strings.Contains(cause.Error(), "cancelled from the dashboard by") {
			t.Errorf("the handler's context ended with %v, want the dashboard's reason", cause)
		}
	case <-time.After(browsertest.DefaultWait):
		t.Fatal("the plugin's handler was not cancelled")
	}
	rec, err := bs.api.GetAction(ctxT(t), res.ActionID)
	if err != nil || rec.Status != schemas.ActionCancelled {
		t.Errorf("the action after the cancel: %+v %v", rec, err)
	}
	p.NoConsoleErrors()
}
