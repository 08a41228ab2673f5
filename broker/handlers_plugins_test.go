package broker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// plugins.list pages through 10,000 plugins: each reply under the max
// payload, every plugin once, in name order, with a state filter and
// limits; an old client sending neither limit nor after gets a first page
// and where to go on.
func TestPluginListPages(t *testing.T) {
	s := startServer(t)
	tb := startBroker(t, Config{NATSURL: s.ClientURL()})
	const n = 10000
	desc := strings.Repeat("a plugin of the paging test ", 10)
	for i := range n {
		name := fmt.Sprintf("p-%05d", i)
		state := schemas.StateActive
		if i%3 == 0 {
			state = schemas.StateStale
		}
		tb.b.reg.put(schemas.PluginRecord{Name: name, Version: "1.0.0", State: state, Manifest: schemas.Manifest{
			Name: name, Version: "1.0.0", Description: desc, Actions: []schemas.ActionSpec{{Command: name, Model: "machines"}},
			Hooks: []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify}}}}, uint64(i+1))
	}
	maxPayload := int(tb.nc.MaxPayload())
	walk := func(req schemas.PluginListRequest) (names []string, pages int) {
		t.Helper()
		for {
			body, _ := json.Marshal(req)
			msg, err := tb.nc.Request(wire.APISubject(tb.b.cfg.Prefix, schemas.APIPluginsList), body, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Data) > maxPayload {
				t.Fatalf("a page of %d bytes, over the max payload %d", len(msg.Data), maxPayload)
			}
			var page schemas.PluginListResponse
			if err := wire.DecodeReply(msg, &page); err != nil {
				t.Fatal(err)
			}
			pages++
			if req.Limit > 0 && len(page.Plugins) > req.Limit {
				t.Fatalf("%d plugins on a page of limit %d", len(page.Plugins), req.Limit)
			}
			for _, p := range page.Plugins {
				if req.State != "" && p.State != req.State {
					t.Fatalf("%s is %s, asked for %s", p.Name, p.State, req.State)
				}
				names = append(names, p.Name)
			}
			if page.NextAfter == "" {
				return names, pages
			}
			if page.NextAfter != names[len(names)-1] {
				t.Fatalf("next_after %q, last on the page %q", page.NextAfter, names[len(names)-1])
			}
			req.After = page.NextAfter
		}
	}
	all, pages := walk(schemas.PluginListRequest{})
	if len(all) != n || !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != n {
		t.Fatalf("%d plugins in %d pages, want %d once each in order", len(all), pages, n)
	}
	if pages < n/schemas.MaxPluginPage {
		t.Fatalf("%d pages for %d plugins: a page holds at most %d", pages, n, schemas.MaxPluginPage)
	}
	stale, _ := walk(schemas.PluginListRequest{State: schemas.StateStale, Limit: 333})
	if len(stale) != (n+2)/3 {
		t.Fatalf("%d STALE plugins, want %d", len(stale), (n+2)/3)
	}
	if got, _ := walk(schemas.PluginListRequest{After: "p-09990", Limit: 7}); !slices.Equal(got, all[9991:]) {
		t.Fatalf("after p-09990: %v", got)
	}
	if got, _ := walk(schemas.PluginListRequest{After: "zzz"}); len(got) != 0 {
		t.Fatalf("after the last name: %v", got)
	}
}
