package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/broker/dashboard"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// login opens an admin session and returns its cookie and CSRF token.
func (bs *bus) login(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	resp, err := noRedirect.Get(bs.loginURL(t, "/plugins"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/plugins" {
		t.Fatalf("login: %s to %q, want 303 to /plugins", resp.Status, resp.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == dashboard.CookieName {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
		t.Fatalf("session cookie %+v, want HttpOnly, SameSite=Strict, Path=/, a max age", c)
	}
	page := bs.getBody(t, "/plugins", c)
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("an admin's page has no CSRF token:\n%s", page)
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}, m[1]
}

func (bs *bus) getBody(t *testing.T, path string, c *http.Cookie) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, bs.base+path, nil)
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
	}
	return string(b)
}

// post sends an action as a browser would, with these credentials and
// headers; it returns the status and the error code.
func (bs *bus) post(t *testing.T, path string, c *http.Cookie, hdr map[string]string) (int, schemas.Error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, bs.base+path, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e schemas.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// Reading needs nothing; every action needs an admin session, its CSRF
// token and the dashboard's own origin; a token signed by anyone but an
// admin opens no session.
func TestActionsNeedAdmin(t *testing.T) {
	bs := startBus(t)
	for _, p := range []string{"/", "/plugins", "/hooks", "/dead-letters", "/hosts", "/actions"} {
		if body := bs.getBody(t, p, nil); strings.Contains(body, "csrf-token") || strings.Contains(body, "data-action") {
			t.Errorf("%s as anyone shows a CSRF token or an action", p)
		}
	}
	replay := "/dash/action/dead-letters/1/replay"
	same := map[string]string{"Origin": bs.base, "Sec-Fetch-Site": "same-origin"}
	if code, e := bs.post(t, replay, nil, same); code != http.StatusForbidden || e.Code != schemas.CodeForbidden || !strings.Contains(e.Message, "busctl dashboard login") {
		t.Errorf("no session: %d %+v, want 403 forbidden saying how to log in", code, e)
	}
	if code, _ := bs.post(t, replay, &http.Cookie{Name: dashboard.CookieName, Value: "pbd1.e30.AAAA"}, same); code != http.StatusForbidden {
		t.Errorf("a forged cookie: %d, want 403", code)
	}

	// A plugin's credentials sign a valid token, but not an admin's.
	res, err := bs.api.PluginCreds(ctxT(t), "intruder")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "intruder.creds")
	if err := os.WriteFile(f, []byte(res.Creds), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirect.Get(bs.base + dashboard.PathLogin + "?token=" + url.QueryEscape(bs.tokenOf(t, f)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("login with a plugin's token: %s, cookies %v; want 403 and no session", resp.Status, resp.Cookies())
	}

	c, csrf := bs.login(t)
	if code, e := bs.post(t, replay, c, same); code != http.StatusForbidden || e.Field != dashboard.CSRFHeader {
		t.Errorf("session without the CSRF token: %d %+v, want 403 naming %s", code, e, dashboard.CSRFHeader)
	}
	if code, _ := bs.post(t, replay, c, map[string]string{dashboard.CSRFHeader: "x" + csrf, "Origin": bs.base}); code != http.StatusForbidden {
		t.Errorf("session with a wrong CSRF token: %d, want 403", code)
	}
	if code, _ := bs.post(t, replay, c, map[string]string{dashboard.CSRFHeader: csrf, "Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Errorf("session and CSRF token from another origin: %d, want 403", code)
	}
	if code, _ := bs.post(t, replay, c, map[string]string{dashboard.CSRFHeader: csrf, "Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("session and CSRF token, cross-site: %d, want 403", code)
	}
	ok := map[string]string{dashboard.CSRFHeader: csrf, "Origin": bs.base, "Sec-Fetch-Site": "same-origin"}
	code, e := bs.post(t, replay, c, ok)
	if code == http.StatusForbidden {
		t.Errorf("an admin's replay was refused: %+v", e)
	}
	// The broker answers: there is no such dead letter.
	if code != http.StatusNotFound || e.Code != schemas.CodeNotFound {
		t.Errorf("an admin's replay of a missing dead letter: %d %+v, want 404 not_found", code, e)
	}
	if code, e := bs.post(t, "/dash/action/plugins/nope/bogus", c, ok); code != http.StatusNotFound || e.Code != schemas.CodeNotFound {
		t.Errorf("an unknown action: %d %+v", code, e)
	}
	// Cancelling an action the broker does not know: its not_found.
	if code, e := bs.post(t, "/dash/action/actions/nope/cancel", c, ok); code != http.StatusNotFound || e.Code != schemas.CodeNotFound {
		t.Errorf("an admin's cancel of a missing action: %d %+v, want 404 not_found", code, e)
	}
	if code, e := bs.post(t, "/dash/action/plugins/nope/disable", c, ok); code != http.StatusBadRequest || e.Field != "host" {
		t.Errorf("disable without a host: %d %+v, want 400 on host", code, e)
	}
	if code, _ := bs.post(t, "/dash/logout", c, ok); code != http.StatusOK {
		t.Errorf("logout: %d", code)
	}
}

// No secret reaches a page, a fragment, the live stream or an event's
// detail: the pages render the API's plugin records (secret config values
// redacted) without their config at all, and the stream sends bucket
// keys, never records.
func TestNoSecretRendered(t *testing.T) {
	bs := startBus(t)
	const secret = "s3cr3t-dashboard-value"
	m := schemas.Manifest{
		Name: "vault", Version: "1.0.0",
		Events:       &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}},
		ConfigSchema: json.RawMessage(`{"type":"object","properties":{"api_token":{"type":"string","writeOnly":true},"region":{"type":"string"}}}`),
	}
	p, err := sdk.New(m, sdk.WithConfig(map[string]any{"api_token": secret, "region": "eu"}))
	if err != nil {
		t.Fatal(err)
	}
	p.HandleEvent(schemas.TypeAlertFired, func(context.Context, event.Event) error { return nil })
	bs.startPlugin(t, p)
	// The API redacts it: the dashboard relies on that.
	rec, err := bs.api.GetPlugin(ctxT(t), "vault")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Config["api_token"] != schemas.Redacted {
		t.Fatalf("plugins.get shows api_token as %v, want it redacted", rec.Config["api_token"])
	}
	bs.fire(t, "secrets")

	c, _ := bs.login(t)
	var seen []string
	for _, path := range []string{"/", "/plugins", "/hooks", "/dead-letters", "/hosts",
		"/dash/fragment/plugins", "/dash/fragment/hooks", "/dash/fragment/dead-letters", "/dash/fragment/hosts"} {
		seen = append(seen, bs.getBody(t, path, c))
	}
	s := bs.openSSE(t, "/dash/stream?topics=events,plugins,hosts&last=1000", nil)
	hello := s.next("hello")
	var h struct {
		LastSeq uint64 `json:"last_seq"`
	}
	_ = json.Unmarshal([]byte(hello.data), &h)
	for _, e := range s.events(int(h.LastSeq)) {
		seen = append(seen, e.data)
	}
	for seq := uint64(1); seq <= h.LastSeq; seq++ {
		seen = append(seen, bs.getBody(t, "/dash/event/"+strconv.FormatUint(seq, 10), c))
	}
	for _, body := range seen {
		if strings.Contains(body, secret) {
			t.Fatalf("a secret config value was rendered:\n%s", body)
		}
	}
	if !strings.Contains(seen[1], `data-plugin="vault"`) {
		t.Fatalf("the plugins page does not show the plugin:\n%s", seen[1])
	}
}
