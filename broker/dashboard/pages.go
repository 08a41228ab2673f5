package dashboard

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

//go:embed assets
var assets embed.FS

// Pages of the dashboard.
const (
	pageEvents      = "events"
	pagePlugins     = "plugins"
	pageHooks       = "hooks"
	pageDeadLetters = "dead-letters"
	pageHosts       = "hosts"
	pageActions     = "actions"
	pageMessage     = "message"
)

// page is one entry of the navigation: where it is, and which topics of
// the live stream keep it current.
type page struct {
	Name, Path, Label, Topics string
}

var pages = []page{
	{pageEvents, PathEvents, "Events", topicEvents},
	{pagePlugins, PathPlugins, "Plugins", topicPlugins + "," + topicHosts},
	{pageHooks, PathHooks, "Hook chains", topicPlugins + "," + topicChains},
	{pageDeadLetters, PathDeadLetters, "Dead letters", topicDeadLetters},
	{pageHosts, PathHosts, "Hosts", topicHosts},
	{pageActions, PathActions, "Actions", topicActions},
}

func pageNamed(name string) (page, bool) {
	for _, p := range pages {
		if p.Name == name {
			return p, true
		}
	}
	return page{}, false
}

// isPage reports whether path is one of the pages (a safe place to send
// a browser after login).
func isPage(path string) bool {
	for _, p := range pages {
		if p.Path == path {
			return true
		}
	}
	return false
}

// pageData is what every template gets.
type pageData struct {
	Page   string
	Title  string
	Pages  []page
	Topics string
	// Admin is set for an admin session; CSRF is its token (rendered for
	// an admin only).
	Admin          bool
	User           string
	CSRF           string
	LoginAvailable bool
	Body           any
	// Error is what failed while loading the page's data.
	Error   *schemas.Error
	Message string
	Backlog int
}

type templates struct{ t *template.Template }

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < 0:
			return "just now"
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"ms": func(v float64) string {
		if v < 10 {
			return fmt.Sprintf("%.2f ms", v)
		}
		return fmt.Sprintf("%.0f ms", v)
	},
	"hookKind": schemas.HookKind,
	"labels": func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k, v := range m {
			out = append(out, k+"="+v)
		}
		sort.Strings(out)
		return out
	},
	"exit": func(e *schemas.InstanceExit) string {
		if e == nil {
			return ""
		}
		s := e.Cause
		if e.Code != nil && e.Signal == "" {
			s += fmt.Sprintf(" (code %d)", *e.Code)
		}
		if e.Signal != "" {
			s += " (" + e.Signal + ")"
		}
		return s
	},
	"lower": strings.ToLower,
	"pct":   func(v float64) string { return fmt.Sprintf("%.0f%%", v) },
}

func parseTemplates() (*templates, error) {
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	return &templates{t: t}, nil
}

func (t *templates) render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := t.t.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (d *Dashboard) pageData(r *http.Request, name string) *pageData {
	p, _ := pageNamed(name)
	pd := &pageData{Page: name, Title: p.Label, Pages: pages, Topics: p.Topics, LoginAvailable: d.cfg.Verify != nil, Backlog: d.cfg.Backlog}
	if s := d.session(r); s != nil {
		pd.Admin, pd.User, pd.CSRF = true, s.user, s.csrf
	}
	return pd
}

// load reads what a page shows.
func (d *Dashboard) load(ctx context.Context, name string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*d.cfg.CallTimeout)
	defer cancel()
	switch name {
	case pagePlugins:
		return d.loadPlugins(ctx)
	case pageHooks:
		return d.loadHooks(ctx)
	case pageDeadLetters:
		return d.loadDeadLetters(ctx)
	case pageHosts:
		return d.loadHosts(ctx)
	case pageActions:
		return d.loadActions(ctx)
	}
	return nil, nil
}

func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request, name string) {
	pd := d.pageData(r, name)
	body, err := d.load(r.Context(), name)
	pd.Body = body
	if err != nil {
		pd.Error = schemas.AsError(err)
	}
	d.tmpl.render(w, http.StatusOK, "layout", pd)
}

// serveFragment renders the live part of a page alone; pages fetch it
// when the stream says something changed.
func (d *Dashboard) serveFragment(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("page")
	if _, ok := pageNamed(name); !ok || name == pageEvents {
		writeError(w, http.StatusNotFound, schemas.Errorf(schemas.CodeNotFound, "page", "no page %q with a fragment", name))
		return
	}
	pd := d.pageData(r, name)
	body, err := d.load(r.Context(), name)
	pd.Body = body
	if err != nil {
		pd.Error = schemas.AsError(err)
	}
	d.tmpl.render(w, http.StatusOK, name+"-fragment", pd)
}

func (d *Dashboard) renderMessage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	pd := d.pageData(r, pageMessage)
	pd.Title, pd.Message = title, msg
	d.tmpl.render(w, status, "layout", pd)
}

func staticHandler() http.Handler {
	sub, err := fs.Sub(assets, "assets/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	fsrv := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}
