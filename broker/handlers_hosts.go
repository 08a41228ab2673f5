package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
)

// Hosts are reported by their hostd into the hosts bucket; the broker
// reads them, writes operators' overrides into the host control bucket
// (which each hostd follows), and marks a host LOST when it stops
// reporting.

func hostNotFound(name string) error {
	e := schemas.Errorf(schemas.CodeNotFound, "name", "host %q has never reported (is its hostd running and connected?)", name)
	e.Details = map[string]any{schemas.DetailKind: "host", schemas.DetailName: name}
	return e
}

func (b *Broker) handleHostsList(ctx context.Context, req *schemas.HostListRequest) (any, error) {
	hosts, err := listJSON[schemas.Host](ctx, b.st.hosts)
	if err != nil {
		return nil, err
	}
	out := schemas.HostListResponse{Hosts: []schemas.Host{}}
	for _, h := range hosts {
		if req.State == "" || h.State == req.State {
			out.Hosts = append(out.Hosts, h)
		}
	}
	sort.Slice(out.Hosts, func(i, j int) bool { return out.Hosts[i].Name < out.Hosts[j].Name })
	return out, nil
}

func (b *Broker) handleHostsGet(ctx context.Context, req *schemas.HostRef) (any, error) {
	var h schemas.Host
	if _, err := getJSON(ctx, b.st.hosts, req.Name, &h); err != nil {
		if isNotFound(err) {
			return nil, hostNotFound(req.Name)
		}
		return nil, err
	}
	return h, nil
}

func (b *Broker) handlePluginsEnable(ctx context.Context, req *schemas.PluginHostRequest) (any, error) {
	return b.setEnabled(ctx, req, true)
}

func (b *Broker) handlePluginsDisable(ctx context.Context, req *schemas.PluginHostRequest) (any, error) {
	return b.setEnabled(ctx, req, false)
}

// setEnabled writes the enabled override of a plugin on one host.
func (b *Broker) setEnabled(ctx context.Context, req *schemas.PluginHostRequest, enabled bool) (any, error) {
	if req.Host == "" {
		e := schemas.Errorf(schemas.CodeInvalidField, "host", "enabling or disabling a plugin needs the host to do it on")
		return nil, e
	}
	if _, err := b.knownHost(ctx, req.Host); err != nil {
		return nil, err
	}
	c, err := b.updateControl(ctx, req.Host, req.Name, func(c *schemas.HostControl) { c.Enabled = &enabled })
	if err != nil {
		return nil, err
	}
	verb := "disabled"
	if enabled {
		verb = "enabled"
	}
	b.log.Info().Str(logging.FieldPlugin, req.Name).Str(logging.FieldHost, req.Host).Msg("plugin " + verb + " on host")
	return schemas.PluginHostResponse{Controls: []schemas.HostControl{c}}, nil
}

// handlePluginsRestart asks the hosts running a plugin (one host, or every
// host that reports an instance of it) to restart its instances.
func (b *Broker) handlePluginsRestart(ctx context.Context, req *schemas.PluginHostRequest) (any, error) {
	var hosts []string
	if req.Host != "" {
		if _, err := b.knownHost(ctx, req.Host); err != nil {
			return nil, err
		}
		hosts = []string{req.Host}
	} else {
		all, err := listJSON[schemas.Host](ctx, b.st.hosts)
		if err != nil {
			return nil, err
		}
		for _, h := range all {
			for _, in := range h.Plugins {
				if in.Plugin == req.Name {
					hosts = append(hosts, h.Name)
					break
				}
			}
		}
		sort.Strings(hosts)
		if len(hosts) == 0 {
			e := schemas.Errorf(schemas.CodeNotFound, "name", "no host reports an instance of plugin %q", req.Name)
			e.Details = map[string]any{schemas.DetailKind: "plugin", schemas.DetailName: req.Name}
			return nil, e
		}
	}
	token := nuid.Next()
	out := schemas.PluginHostResponse{Controls: []schemas.HostControl{}}
	for _, h := range hosts {
		c, err := b.updateControl(ctx, h, req.Name, func(c *schemas.HostControl) { c.Restart = token })
		if err != nil {
			return nil, err
		}
		out.Controls = append(out.Controls, c)
	}
	b.log.Info().Str(logging.FieldPlugin, req.Name).Strs("hosts", hosts).Msg("plugin restart requested")
	return out, nil
}

// knownHost reads a host, failing with not_found when it never reported.
func (b *Broker) knownHost(ctx context.Context, name string) (schemas.Host, error) {
	var h schemas.Host
	if _, err := getJSON(ctx, b.st.hosts, name, &h); err != nil {
		if isNotFound(err) {
			return h, hostNotFound(name)
		}
		return h, err
	}
	return h, nil
}

func (b *Broker) updateControl(ctx context.Context, host, plugin string, change func(*schemas.HostControl)) (schemas.HostControl, error) {
	return updateJSON(ctx, b.st.hostctl, schemas.HostControlKey(host, plugin), func(c *schemas.HostControl, _ bool) error {
		c.Host, c.Plugin = host, plugin
		change(c)
		c.UpdatedAt = time.Now().UTC()
		return nil
	})
}

// markLostHosts marks LOST every UP host whose last heartbeat is older
// than DefaultHostLostAfter of its own intervals, with its instances, and
// publishes the change.
func (b *Broker) markLostHosts(ctx context.Context) {
	hosts, err := listJSON[schemas.Host](ctx, b.st.hosts)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn().Err(err).Msg("list hosts")
		}
		return
	}
	now := time.Now()
	for _, h := range hosts {
		if h.State != schemas.HostUp {
			continue
		}
		limit := time.Duration(DefaultHostLostAfter) * h.HeartbeatInterval.D()
		if now.Sub(h.HeartbeatAt) <= limit {
			continue
		}
		reason := fmt.Sprintf("no heartbeat since %s (more than %d intervals of %s)", h.HeartbeatAt.UTC().Format(time.RFC3339), DefaultHostLostAfter, h.HeartbeatInterval.D())
		marked := false
		_, err := updateJSON(ctx, b.st.hosts, h.Name, func(cur *schemas.Host, exists bool) error {
			// Only if it is still the same silent host: hostd may have
			// just reported.
			if !exists || cur.State != schemas.HostUp || now.Sub(cur.HeartbeatAt) <= limit {
				marked = false
				return errUnchanged
			}
			cur.State = schemas.HostLost
			for i := range cur.Plugins {
				cur.Plugins[i].State = schemas.InstanceLost
				cur.Plugins[i].PID = 0
			}
			marked = true
			return nil
		})
		if err != nil && err != errUnchanged {
			b.log.Warn().Err(err).Str(logging.FieldHost, h.Name).Msg("mark host LOST")
			continue
		}
		if !marked {
			continue
		}
		b.log.Warn().Str(logging.FieldHost, h.Name).Str(logging.FieldReason, reason).Msg("host LOST")
	}
}

// lostHostsLoop marks silent hosts LOST every heartbeat interval until
// ctx ends (a leader's duty: leader.go).
func (b *Broker) lostHostsLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.markLostHosts(ctx)
		}
	}
}

// hostsLoop publishes every host state change it sees in the hosts
// bucket, until ctx ends. Every broker runs it: the events' ids come from
// the records' revisions, so the stream stores each once.
func (b *Broker) hostsLoop(ctx context.Context) {
	w, err := b.st.hosts.WatchAll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Error().Err(err).Msg("watch hosts")
		}
		return
	}
	defer func() { _ = w.Stop() }()
	seen := map[string]schemas.HostState{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the initial values are in
				initial = false
				continue
			}
			var h schemas.Host
			if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &h) != nil {
				delete(seen, e.Key())
				continue
			}
			from, known := seen[h.Name]
			seen[h.Name] = h.State
			if initial || (known && from == h.State) {
				continue
			}
			b.publishHostState(ctx, h, from, e.Revision())
		}
	}
}

// publishHostState publishes io.plugbus.host.v1.state_changed. Its id
// comes from the host record's revision, so several brokers watching the
// same bucket store it once.
func (b *Broker) publishHostState(ctx context.Context, h schemas.Host, from schemas.HostState, revision uint64) {
	data := schemas.HostStateChangedData{Name: h.Name, From: from, To: h.State}
	if h.State == schemas.HostLost {
		data.Reason = fmt.Sprintf("no heartbeat since %s", h.HeartbeatAt.UTC().Format(time.RFC3339))
	}
	id := fmt.Sprintf("host-%s-%d", h.Name, revision)
	if _, err := b.publishLater(ctx, schemas.TypeHostStateChanged, data, WithSubject("host/"+h.Name), WithID(id)); err != nil {
		b.log.Error().Err(err).Str(logging.FieldHost, h.Name).Msg("publish host state")
	}
}
