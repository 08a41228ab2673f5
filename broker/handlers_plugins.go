package broker

import (
	"context"

	"github.com/plugbus/plugbus/schemas"
)

func (b *Broker) handleRegister(ctx context.Context, req *schemas.RegisterRequest) (any, error) {
	return b.reg.register(ctx, req)
}

func (b *Broker) handlePluginList(_ context.Context, req *schemas.PluginListRequest) (any, error) {
	out := schemas.PluginListResponse{Plugins: []schemas.PluginRecord{}}
	for _, rec := range b.reg.cached() {
		if req.State == "" || rec.State == req.State {
			out.Plugins = append(out.Plugins, rec)
		}
	}
	return out, nil
}

func (b *Broker) handlePluginGet(ctx context.Context, req *schemas.PluginGetRequest) (any, error) {
	rec, _, err := b.reg.get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

func (b *Broker) handlePluginUnregister(ctx context.Context, req *schemas.PluginUnregisterRequest) (any, error) {
	rec, err := b.reg.unregister(ctx, req)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

func (b *Broker) handlePluginConfig(ctx context.Context, req *schemas.PluginConfigRequest) (any, error) {
	rec, err := b.reg.configure(ctx, req)
	if err != nil {
		return nil, err
	}
	return rec, nil
}
