package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/plugbus/plugbus/broker/dashboard/token"
	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/schemas"
)

// Access: reading needs nothing; every action needs an admin session. A
// session is a login token (package token) kept in a cookie that is
// HttpOnly and SameSite=Strict; every action also needs the session's
// CSRF token in the X-CSRF-Token header (pages carry it in a meta tag
// for an admin only) and must come from the dashboard's own origin
// (http.CrossOriginProtection: Sec-Fetch-Site, else Origin against Host).
const (
	// CookieName is the session cookie.
	CookieName = "plugbus_dashboard"
	// CSRFHeader carries the session's CSRF token on every action.
	CSRFHeader = "X-CSRF-Token"
)

// ErrNoLogin is returned when the dashboard cannot check credentials
// (Config.Verify is nil).
var ErrNoLogin = errors.New("this broker cannot check admin credentials (it runs without the bus's authority), so the dashboard is read-only")

// session is an admin's login.
type session struct {
	user    string
	expires time.Time
	csrf    string
}

type sessionKey struct{}

// csrfToken derives a session's CSRF token from its cookie: only a page
// that was served the cookie's session (an admin's page) knows it, and a
// cross-site page can read neither.
func csrfToken(cookie string) string {
	sum := sha256.Sum256([]byte("plugbus-dashboard-csrf\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// checkToken checks a login token: its own signature and window, then
// the credentials behind it against the bus's authority, and that they
// are an admin's.
func (d *Dashboard) checkToken(s string) (*session, error) {
	if d.cfg.Verify == nil {
		return nil, ErrNoLogin
	}
	t, err := token.Parse(s, time.Now())
	if err != nil {
		return nil, err
	}
	role, err := d.cfg.Verify(t.UserJWT)
	if err != nil {
		return nil, err
	}
	if role != identity.RoleAdmin {
		return nil, fmt.Errorf("the token is signed by the credentials of %s (role %q), not an admin's", t.User.Name, role)
	}
	return &session{user: t.User.Name, expires: t.Expires, csrf: csrfToken(s)}, nil
}

// session returns the request's admin session, nil without a valid one.
func (d *Dashboard) session(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	s, err := d.checkToken(c.Value)
	if err != nil {
		return nil
	}
	return s
}

// admin lets only an admin session's same-origin requests with the right
// CSRF token through; the rest get 403 and a JSON error.
func (d *Dashboard) admin(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, schemas.Errorf(schemas.CodeForbidden, "",
			"cross-origin request refused: actions are taken from the dashboard's own pages only"))
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(CookieName)
		if err != nil || c.Value == "" {
			writeError(w, http.StatusForbidden, schemas.Errorf(schemas.CodeForbidden, "",
				"this action needs an admin login: run `busctl dashboard login` and open the URL it prints"))
			return
		}
		s, err := d.checkToken(c.Value)
		if err != nil {
			writeError(w, http.StatusForbidden, schemas.Errorf(schemas.CodeForbidden, "",
				"the admin login is not valid (%v): run `busctl dashboard login` again", err))
			return
		}
		if got := r.Header.Get(CSRFHeader); subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
			writeError(w, http.StatusForbidden, schemas.Errorf(schemas.CodeForbidden, CSRFHeader,
				"missing or wrong CSRF token: take actions from the dashboard's pages (reload the page)"))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}))
}

// serveLogin opens an admin session from ?token=… and sends the browser
// to the page it names with ?next= (the events page by default).
func (d *Dashboard) serveLogin(w http.ResponseWriter, r *http.Request) {
	s, err := d.checkToken(r.URL.Query().Get("token"))
	if err != nil {
		status := http.StatusForbidden
		if errors.Is(err, ErrNoLogin) {
			status = http.StatusServiceUnavailable
		}
		d.renderMessage(w, r, status, "Login refused",
			fmt.Sprintf("%v. Run `busctl dashboard login` (with the admin's credentials) for a new login URL.", err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: r.URL.Query().Get("token"), Path: "/",
		Expires: s.expires, MaxAge: int(time.Until(s.expires).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	next := PathEvents
	if n := r.URL.Query().Get("next"); isPage(n) {
		next = n
	}
	d.log.Info().Str("user", s.user).Time("expires", s.expires).Msg("dashboard admin login")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// serveLogout ends the browser's session (the token stays valid until it
// expires: it is the admin's to keep or drop).
func (d *Dashboard) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]string{"message": "logged out"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with a plugbus error: {"code", "message", …}.
func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, schemas.AsError(err))
}
