package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/plugbus/plugbus/schemas"
)

func (b *Broker) handleRegister(ctx context.Context, req *schemas.RegisterRequest) (any, error) {
	if err := sameName(ctx, "manifest.name", req.Manifest.Name); err != nil {
		return nil, err
	}
	return b.reg.register(ctx, req)
}

// sameName refuses a scoped request whose subject names another plugin
// than its body: the subject is what the server checked.
func sameName(ctx context.Context, field, name string) error {
	if caller := callerName(ctx); caller != name {
		e := schemas.Errorf(schemas.CodeForbidden, field, "this request was sent on the subject of plugin %q but names plugin %q: a plugin may only act for itself", caller, name)
		e.Details = map[string]any{schemas.DetailPlugin: name}
		return e
	}
	return nil
}

// pluginPage is a page of plugins.list with its records already encoded
// (schemas.PluginListResponse on the wire): the page is cut by the size
// of what it sends.
type pluginPage struct {
	Plugins   []json.RawMessage `json:"plugins"`
	NextAfter string            `json:"next_after,omitempty"`
}

// pageHeadroom is what a reply's page leaves of the max payload for the
// envelope, headers (tracing, error codes) and the cursor.
const pageHeadroom = 16 << 10

func (b *Broker) handlePluginList(_ context.Context, req *schemas.PluginListRequest) (any, error) {
	limit := req.Limit
	if limit <= 0 || limit > schemas.MaxPluginPage {
		limit = schemas.MaxPluginPage
	}
	budget := int(min(b.nc.MaxPayload(), int64(b.cfg.MaxRequestBytes))) - pageHeadroom
	recs := b.reg.cached()
	i := 0
	if req.After != "" {
		i = sort.Search(len(recs), func(i int) bool { return recs[i].Name > req.After })
	}
	out := pluginPage{Plugins: []json.RawMessage{}}
	size := 0
	last := ""
	for ; i < len(recs); i++ {
		rec := recs[i]
		if req.State != "" && rec.State != req.State {
			continue
		}
		if len(out.Plugins) == limit {
			out.NextAfter = last
			break
		}
		body, err := json.Marshal(redacted(rec))
		if err != nil {
			return nil, fmt.Errorf("encode plugin %s: %w", rec.Name, err)
		}
		if len(out.Plugins) > 0 && size+len(body)+1 > budget {
			out.NextAfter = last
			break
		}
		out.Plugins = append(out.Plugins, body)
		size += len(body) + 1
		last = rec.Name
	}
	return out, nil
}

func (b *Broker) handlePluginGet(ctx context.Context, req *schemas.PluginGetRequest) (any, error) {
	rec, err := b.reg.get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return redacted(rec.PluginRecord), nil
}

// redacted is a plugin record as the API shows it: the values of the
// config keys its config schema marks secret ("writeOnly": true) are
// replaced by schemas.Redacted. Only the plugin itself reads them, from
// its key in the configs bucket.
func redacted(rec schemas.PluginRecord) schemas.PluginRecord {
	if len(rec.Config) == 0 || !bytes.Contains(rec.Manifest.ConfigSchema, []byte("writeOnly")) {
		return rec
	}
	cs, err := schemas.CompileConfigSchema(rec.Manifest.ConfigSchema)
	if err != nil {
		// A stored manifest's schema compiled when it registered; show
		// no config rather than risk a secret.
		rec.Config = nil
		return rec
	}
	rec.Config = cs.Redact(rec.Config)
	return rec
}

func (b *Broker) handlePluginUnregister(ctx context.Context, req *schemas.PluginUnregisterRequest) (any, error) {
	if err := sameName(ctx, "name", req.Name); err != nil {
		return nil, err
	}
	rec, err := b.reg.unregister(ctx, req)
	if err != nil {
		return nil, err
	}
	return redacted(rec), nil
}

func (b *Broker) handlePluginConfig(ctx context.Context, req *schemas.PluginConfigRequest) (any, error) {
	rec, err := b.reg.configure(ctx, req)
	if err != nil {
		return nil, err
	}
	return redacted(rec), nil
}
