package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/internal/browsertest"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// liveWithin bounds how long the issue gives an event to reach the page.
const liveWithin = time.Second

// TestDashboardDoneMeans is issue 12's "done means" with `make run` (the
// real binaries, in Chromium): the events page shows the event of `busctl
// alert fire --severity critical --summary "disk full"` within a second;
// the plugins page shows the three sample plugins ACTIVE; a plugin killed
// shows its restart on the hosts page, without a reload; and the banner's
// login URL makes the browser the admin, who disables and enables a plugin
// from the page. With -update it writes the
// screenshots docs/dashboard.md shows (docs/img/dashboard-*.png).
func TestDashboardDoneMeans(t *testing.T) {
	lb := startLocalBus(t, false)
	base := "http://" + lb.httpAddr
	p := browsertest.NewPage(t)
	p.Navigate(base + "/")
	p.WaitTrue("the events page is live", `document.querySelector('#live').dataset.state === 'live'`, browsertest.DefaultWait)

	var fired schemas.AlertResponse
	if err := json.Unmarshal([]byte(lb.mustBusctl(t, "alert", "fire", "--severity", "critical", "--summary", "disk full", "--label", "host=m1", "-o", "json")), &fired); err != nil {
		t.Fatal(err)
	}
	took := p.WaitTrue("the alert on the events page", `document.querySelector('#events tr[data-id="`+fired.EventID+`"]') !== null`, liveWithin)
	t.Logf("the alert reached the page %s after busctl returned", took)
	p.NoConsoleErrors()

	p.Navigate(base + "/plugins")
	for _, name := range []string{"incrementer", "job-policy", "notify-webhook"} {
		p.WaitTrue(name+" ACTIVE", `document.querySelector('tr[data-plugin="`+name+`"][data-state="ACTIVE"]') !== null`, browsertest.DefaultWait)
	}
	p.NoConsoleErrors()

	p.Navigate(base + "/hosts")
	row := `document.querySelector('.host[data-host="local"] tr[data-plugin="incrementer"]')`
	p.WaitTrue("incrementer RUNNING on local", row+` !== null && `+row+`.dataset.instanceState === 'RUNNING'`, browsertest.DefaultWait)
	old, _ := instanceOf(lb.host(t), "incrementer")
	browsertest.Eval[bool](p, `window.notReloaded = true`)
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.WaitTrue("the restart on the hosts page", row+`.dataset.restarts === '`+strconv.Itoa(old.Restarts+1)+`' && `+row+`.dataset.pid !== '`+strconv.Itoa(old.PID)+`' && `+
		row+`.dataset.instanceState === 'RUNNING'`, 30*time.Second)
	if !browsertest.Eval[bool](p, `window.notReloaded === true`) {
		t.Error("the hosts page was reloaded")
	}
	p.NoConsoleErrors()

	// The banner's login URL makes the browser the admin.
	m := regexp.MustCompile(`http://\S+/dash/login\?token=\S+`).FindString(lb.proc.out.String())
	if m == "" {
		t.Fatalf("the banner has no login URL:\n%s", lb.proc.out.String())
	}
	if u, err := url.Parse(m); err != nil || u.Host != lb.httpAddr {
		t.Fatalf("login URL %q is not the dashboard's (%s)", m, lb.httpAddr)
	}
	p.Navigate(m + "&next=/plugins")
	p.WaitTrue("admin actions on the plugins page", `document.querySelector('tr[data-plugin="incrementer"] button[data-action$="/verify"]') !== null`, browsertest.DefaultWait)
	// The admin disables the incrementer on its host and enables it again,
	// from the page: hostd stops and restarts it, and the page follows.
	inst := `document.querySelector('tr[data-plugin="incrementer"] .inst[data-host="local"]')`
	p.Click(`tr[data-plugin="incrementer"] button[data-action$="/disable"][data-host="local"]`)
	p.WaitTrue("incrementer DISABLED on the plugins page", inst+` !== null && `+inst+`.dataset.instanceState === 'DISABLED'`, 30*time.Second)
	p.WaitTrue("the enable button", `document.querySelector('tr[data-plugin="incrementer"] button[data-action$="/enable"][data-host="local"]') !== null`, browsertest.DefaultWait)
	p.Click(`tr[data-plugin="incrementer"] button[data-action$="/enable"][data-host="local"]`)
	p.WaitTrue("incrementer RUNNING and ACTIVE again", inst+` !== null && `+inst+`.dataset.instanceState === 'RUNNING' && document.querySelector('tr[data-plugin="incrementer"][data-state="ACTIVE"]') !== null`, 30*time.Second)
	p.NoConsoleErrors()

	if *update {
		docScreenshots(t, lb, p, base)
	}
}

// docScreenshots fills every page with something to show and writes
// docs/img/dashboard-PAGE.png.
func docScreenshots(t *testing.T, lb *localBus, p *browsertest.Page, base string) {
	// A crash for the hosts page to show.
	before, _ := instanceOf(lb.host(t), "incrementer")
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "incrementer restarted", func() bool {
		in, _ := instanceOf(lb.host(t), "incrementer")
		return in.State == schemas.InstanceRunning && in.Restarts == before.Restarts+1
	})
	lb.mustBusctl(t, "machine", "action", "m1", "increment")
	// A long action running while the actions page is taken.
	lb.mustBusctl(t, "machine", "action", "m2", "firmware-update", "--no-wait")
	lb.mustBusctl(t, "job", "deploy", "demo", "--version", "1", "--image", "nginx")
	lb.mustBusctl(t, "alert", "fire", "--severity", "warning", "--summary", "disk 85% full", "--label", "host=m2")
	// A forged event that no plugin can read, dead-lettered by each
	// consumer of its type (published with the broker's own credentials:
	// no other identity may publish a core event).
	nc, err := nats.Connect(lb.natsURL, nats.UserCredentials(filepath.Join(lb.dataDir, "auth", "broker.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := &nats.Msg{Subject: wire.EventSubject("plugbus", schemas.TypeAlertFired), Data: []byte(`{"summary": "no attributes"}`), Header: nats.Header{}}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(repoRoot(t), "docs", "img")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shots := []struct{ path, name, ready string }{
		{"/", "events", `document.querySelectorAll('#events tr').length >= 5 && document.querySelectorAll('#rate-list li').length >= 5`},
		{"/plugins", "plugins", `document.querySelectorAll('tr[data-plugin][data-state="ACTIVE"]').length === 3`},
		{"/hooks", "hooks", `document.querySelector('tr[data-chain]') !== null`},
		{"/dead-letters", "dead-letters", `document.querySelector('tr[data-seq]') !== null`},
		{"/hosts", "hosts", `document.querySelector('.host[data-state="UP"]') !== null`},
		{"/actions", "actions", `document.querySelector('tr[data-status="running"] progress') !== null && document.querySelector('tr[data-status="succeeded"]') !== null`},
	}
	for _, s := range shots {
		p.Navigate(base + s.path)
		p.WaitTrue(s.name+" has something to show", s.ready, 30*time.Second)
		if s.name == "events" {
			p.Click(`#events tr[data-type="io.plugbus.alert.v1.fired"]`)
			p.WaitTrue("the event's detail", `document.querySelector('#detail-body').textContent.includes('specversion')`, browsertest.DefaultWait)
		}
		if s.name == "dead-letters" {
			p.Click(`tr[data-seq] details summary`)
		}
		out := filepath.Join(dir, "dashboard-"+s.name+".png")
		p.ScreenshotTo(out, 1360, 800)
		t.Logf("wrote %s", out)
	}
	if strings.Contains(lb.proc.out.String(), "panic") {
		t.Error("a process panicked")
	}
}
