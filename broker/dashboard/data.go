package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/broker/identity"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// What the pages show, built from the broker API (which redacts secret
// config) and the streams. The views copy only what a page renders: no
// configs, no init metadata, no process output, no credentials.

// Window sizes of the pages.
const (
	recentChainRuns   = 25
	recentDeadLetters = 100
)

type pluginView struct {
	Name, Version, Description, Category string
	State                                schemas.PluginState
	LastError                            *schemas.Error
	Consumer                             string
	Lag                                  *lagView
	EventTypes                           []string
	Hooks                                []string
	Actions                              []string
	Instances                            []instanceView
	UpdatedAt                            time.Time
}

type lagView struct {
	// Pending are events not yet delivered, AckPending delivered and not
	// yet acknowledged, Redelivered delivered more than once.
	Pending, AckPending, Redelivered uint64
	Err                              string
}

type instanceView struct {
	Plugin, Host string
	HostState    schemas.HostState
	Instance     string
	State        schemas.InstanceState
	Version      string
	PID          int
	Restarts     int
	StartedAt    *time.Time
	LastExit     *schemas.InstanceExit
	Reason       string
}

type hostView struct {
	Name, HostdVersion string
	State              schemas.HostState
	Labels             map[string]string
	StartedAt          time.Time
	HeartbeatAt        time.Time
	Instances          []instanceView
}

type hooksView struct {
	Chains []schemas.HookChain
	Runs   []schemas.ChainRecord
	RunErr *schemas.Error
}

type deadLetterView struct {
	Seq        uint64
	Time       time.Time
	Consumer   string
	Plugin     string
	Cause      string
	Code       string
	Reason     string
	StreamSeq  uint64
	Deliveries string
	Event      eventSummary
	Replay     *schemas.DLQReplay
}

func instancesOf(hosts []schemas.Host) []instanceView {
	var out []instanceView
	for _, h := range hosts {
		for _, in := range h.Plugins {
			out = append(out, instanceView{
				Plugin: in.Plugin, Host: h.Name, HostState: h.State, Instance: in.Instance, State: in.State,
				Version: in.Version, PID: in.PID, Restarts: in.Restarts, StartedAt: in.StartedAt, LastExit: in.LastExit, Reason: in.Reason,
			})
		}
	}
	return out
}

func (d *Dashboard) loadPlugins(ctx context.Context) ([]pluginView, error) {
	recs, err := d.api.ListPlugins(ctx, "")
	if err != nil {
		return nil, err
	}
	hosts, herr := d.api.ListHosts(ctx, "")
	insts := instancesOf(hosts)
	out := make([]pluginView, 0, len(recs))
	for _, rec := range recs {
		v := pluginView{Name: rec.Name, Version: rec.Version, Description: rec.Manifest.Description, Category: rec.Manifest.Category,
			State: rec.State, LastError: rec.LastError, Consumer: rec.Consumer, UpdatedAt: rec.UpdatedAt}
		if ev := rec.Manifest.Events; ev != nil {
			v.EventTypes = ev.Types
		}
		for _, h := range rec.Manifest.Hooks {
			v.Hooks = append(v.Hooks, h.Hook)
		}
		for _, a := range rec.Manifest.Actions {
			v.Actions = append(v.Actions, strings.TrimPrefix(a.Model+"."+a.Command, "."))
		}
		for _, in := range insts {
			if in.Plugin == rec.Name {
				v.Instances = append(v.Instances, in)
			}
		}
		if rec.Consumer != "" {
			v.Lag = d.lag(ctx, rec.Consumer)
		}
		out = append(out, v)
	}
	if herr != nil {
		return out, herr
	}
	return out, nil
}

func (d *Dashboard) lag(ctx context.Context, consumer string) *lagView {
	c, err := d.cfg.JetStream.Consumer(ctx, schemas.StreamEvents, consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return &lagView{Err: "no consumer " + consumer}
		}
		return &lagView{Err: err.Error()}
	}
	info := c.CachedInfo()
	return &lagView{Pending: info.NumPending, AckPending: uint64(info.NumAckPending), Redelivered: uint64(info.NumRedelivered)}
}

func (d *Dashboard) loadHosts(ctx context.Context) ([]hostView, error) {
	hosts, err := d.api.ListHosts(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]hostView, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, hostView{Name: h.Name, HostdVersion: h.HostdVersion, State: h.State, Labels: h.Labels,
			StartedAt: h.StartedAt, HeartbeatAt: h.HeartbeatAt, Instances: instancesOf([]schemas.Host{h})})
	}
	return out, nil
}

func (d *Dashboard) loadHooks(ctx context.Context) (hooksView, error) {
	var v hooksView
	chains, err := d.api.HooksList(ctx, "")
	if err != nil {
		return v, err
	}
	v.Chains = chains.Chains
	msgs, err := d.readWindow(ctx, schemas.StreamEvents, []string{wire.EventSubject(d.cfg.Prefix, schemas.TypeHookChainCompleted)}, recentChainRuns)
	if err != nil {
		v.RunErr = schemas.AsError(err)
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		ev, err := wire.DecodeEvent(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil {
			continue
		}
		var rec schemas.ChainRecord
		if json.Unmarshal(ev.Data(), &rec) == nil {
			v.Runs = append(v.Runs, rec)
		}
	}
	return v, nil
}

func (d *Dashboard) loadDeadLetters(ctx context.Context) ([]deadLetterView, error) {
	msgs, err := d.readWindow(ctx, schemas.StreamDLQ, nil, recentDeadLetters)
	// Replays are recorded per dead letter (dlq.replay); a bus that never
	// replayed one may have no bucket yet.
	replays, _ := d.cfg.JetStream.KeyValue(ctx, schemas.BucketDLQReplays)
	out := make([]deadLetterView, 0, len(msgs))
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		h := m.Header
		v := deadLetterView{Seq: m.Seq, Time: m.Time.UTC(), Consumer: h.Get(schemas.HeaderDLQConsumer), Cause: h.Get(schemas.HeaderDLQCause),
			Code: h.Get(schemas.HeaderDLQCode), Reason: h.Get(schemas.HeaderDLQReason), Deliveries: h.Get(schemas.HeaderDLQDeliveries)}
		v.Plugin = strings.TrimPrefix(v.Consumer, schemas.ConsumerName(""))
		v.StreamSeq, _ = strconv.ParseUint(h.Get(schemas.HeaderDLQStreamSeq), 10, 64)
		subject := h.Get(schemas.HeaderDLQSubject)
		if subject == "" {
			subject = m.Subject
		}
		v.Event = summarize(ctx, subject, h, m.Data, v.StreamSeq, m.Time)
		if replays != nil && v.StreamSeq != 0 {
			if e, err := replays.Get(ctx, schemas.DLQReplayKey(v.Consumer, v.StreamSeq)); err == nil {
				var r schemas.DLQReplay
				if json.Unmarshal(e.Value(), &r) == nil {
					v.Replay = &r
				}
			}
		}
		out = append(out, v)
	}
	return out, err
}

// windowMsg is one message of a window readWindow read.
type windowMsg struct {
	Subject string
	Header  nats.Header
	Data    []byte
	Seq     uint64
	Time    time.Time
}

// readWindow reads the last n messages of a stream matching filters,
// oldest first, through streams.read as busctl does (the broker finds the
// window and pushes it to an inbox of the form that call takes).
func (d *Dashboard) readWindow(ctx context.Context, stream string, filters []string, n uint64) ([]windowMsg, error) {
	nc := d.cfg.Conn
	// streams.read delivers to an admin's inbox only: the dashboard reads
	// for admins.
	inbox := wire.InboxPrefix(string(identity.RoleAdmin), "") + "." + nuid.Next()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, 64<<20)
	if err := nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}
	var resp schemas.StreamReadResponse
	if err := d.api.Call(ctx, schemas.APIStreamsRead, schemas.StreamReadRequest{Stream: stream, Filters: filters, Last: n, Deliver: inbox}, &resp); err != nil {
		return nil, err
	}
	if resp.Consumer == "" {
		return nil, nil
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.CallTimeout)
		_ = d.api.Call(sctx, schemas.APIStreamsStop, schemas.StreamStopRequest{Stream: stream, Consumer: resp.Consumer}, nil)
		cancel()
	}()
	out := make([]windowMsg, 0, resp.Want)
	for uint64(len(out)) < resp.Want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return out, err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "100" {
			// Flow control wants an answer; heartbeats need none.
			if m.Reply != "" {
				_ = m.Respond(nil)
			}
			continue
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		out = append(out, windowMsg{Subject: m.Subject, Header: m.Header, Data: m.Data, Seq: meta.Sequence.Stream, Time: meta.Timestamp})
		if meta.NumPending == 0 {
			break
		}
	}
	return out, nil
}

// recentActions bounds the actions page: the newest ones (actions.list
// answers newest first).
const recentActions = 100

// actionView is an action as the actions page shows it.
type actionView struct {
	schemas.ActionRecord
	// Final is set once the action ended (it can no longer be cancelled).
	Final bool
	// Result is the plugin's result as JSON text, cut to maxPreview.
	ResultText string
}

func (d *Dashboard) loadActions(ctx context.Context) ([]actionView, error) {
	actions, err := d.api.ListActions(ctx, schemas.ActionListRequest{Limit: recentActions})
	if err != nil {
		return nil, err
	}
	out := make([]actionView, 0, len(actions))
	for _, a := range actions {
		v := actionView{ActionRecord: a, Final: schemas.ActionFinal(a.Status)}
		if len(a.Result) > 0 {
			v.ResultText = string(a.Result)
			if len(v.ResultText) > maxPreview {
				v.ResultText = v.ResultText[:maxPreview] + "…"
			}
		}
		out = append(out, v)
	}
	return out, nil
}
