package sdk

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
)

// Plugin is one running instance of a plugbus plugin. Create it with New,
// register handlers, then call Run (or use Main). Handlers may be
// registered before Run; the accessors are safe for concurrent use.
type Plugin struct {
	manifest schemas.Manifest
	opts     options

	mu         sync.RWMutex
	log        zerolog.Logger
	onInit     func(ctx context.Context, req schemas.InitRequest) (map[string]any, error)
	onConfig   func(ctx context.Context, cfg Config) error
	onVerify   func(ctx context.Context) error
	actions    map[string]ActionHandler
	hooks      map[string]HookHandler
	events     eventRoutes
	cfg        Config
	state      schemas.PluginState
	stateAt    time.Time
	nc         *nats.Conn
	js         jetstream.JetStream
	svc        *wire.Service
	instanceID string
	handled    jetstream.KeyValue // plugbus_handled, bound by Once

	// applyMu serialises config application; applied is the canonical JSON
	// of the config last applied (nil: none yet); verbFloor is the config
	// bucket revision below which pushed values are older than a config
	// the verb brought.
	applyMu   sync.Mutex
	applied   []byte
	verbFloor uint64

	running    atomic.Bool
	base       context.Context // handler contexts derive from it; never cancelled by shutdown
	ready      chan struct{}
	readyOnce  sync.Once
	active     chan struct{}
	activeOnce sync.Once
	// configured is closed once the config handler has accepted the
	// stored configuration (at once when none is stored); events wait
	// for it.
	configured     chan struct{}
	configuredOnce sync.Once
	reregister     chan struct{}

	middleware []Middleware
	onShutdown []func(ctx context.Context) error
	client     *client.Client

	// settings are the delivery settings of the consumer being consumed
	// (nil before); settingsChanged asks the consume loop to read them
	// again; cons is the consumer (nil before consumption starts).
	settings        atomic.Pointer[deliverySettings]
	settingsChanged chan struct{}
	consMu          sync.Mutex
	cons            jetstream.Consumer
	// registration is the version and registration time of the plugin's
	// record last seen: a change means a new registration, which may have
	// changed the consumer.
	registration string

	stats   counters
	metrics *sdkMetrics
	// replay is the plugin's side of replays (replay.go).
	replay replayState
	// handlerEWMA is the moving average of event handler run time, in ns.
	handlerEWMA atomic.Int64
	// acts are the actions the instance runs (progress.go); stopCtx ends
	// their completion reports once the instance stopped.
	acts    actionRuns
	stopCtx context.Context
}

// New checks the manifest and the options and returns a Plugin ready for
// handlers. It has no side effects: nothing connects until Run. The
// manifest is checked exactly as the broker checks it at registration
// ([schemas.Manifest.Validate]); a manifest the broker would refuse is an
// error wrapping ErrInvalidManifest and the *schemas.Error naming the field.
func New(m schemas.Manifest, opts ...Option) (*Plugin, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	p := &Plugin{
		manifest:   m,
		opts:       o,
		log:        o.logger.With().Str(FieldPlugin, m.Name).Logger(),
		actions:    map[string]ActionHandler{},
		hooks:      map[string]HookHandler{},
		cfg:        Config{},
		base:       context.Background(),
		ready:      make(chan struct{}),
		active:     make(chan struct{}),
		configured: make(chan struct{}),
		reregister: make(chan struct{}, 1),

		settingsChanged: make(chan struct{}, 1),
	}
	p.client = client.NewFunc(p.Conn, client.WithPrefix(o.prefix))
	p.metrics = newSDKMetrics(p)
	return p, nil
}

// Manifest returns the plugin's manifest.
func (p *Plugin) Manifest() schemas.Manifest { return p.manifest }

// Name returns the plugin's name (from the manifest).
func (p *Plugin) Name() string { return p.manifest.Name }

// Prefix returns the subject prefix of the bus the plugin runs on.
func (p *Plugin) Prefix() string { return p.opts.prefix }

// Logger returns the plugin's logger, with the plugin and (once running)
// instance fields set. Each call returns a new copy.
func (p *Plugin) Logger() *zerolog.Logger {
	p.mu.RLock()
	defer p.mu.RUnlock()
	l := p.log
	return &l
}

// Conn returns the NATS connection the plugin runs on, nil before Run. To
// call the broker API, use [Plugin.Client].
func (p *Plugin) Conn() *nats.Conn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.nc
}

// Client returns the plugin's broker API client. It may be taken at any
// time (in setup, before Run) and works once Run has connected: in
// handlers, in OnShutdown, and after Ready. A call made before Run
// connected fails with an error wrapping [client.ErrNotConnected].
func (p *Plugin) Client() *client.Client { return p.client }

// OnShutdown adds a cleanup function that Run calls when it stops: after
// the plugin stopped taking requests and events, before the connection
// drains (so it may still call the bus). ctx bounds it (30s). Functions
// run in the reverse order they were added; their errors are logged.
func (p *Plugin) OnShutdown(f func(ctx context.Context) error) {
	if f == nil {
		panic("sdk: OnShutdown: nil function")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onShutdown = append(p.onShutdown, f)
}

// runShutdownHooks runs the OnShutdown functions, last added first.
func (p *Plugin) runShutdownHooks(log *zerolog.Logger) {
	p.mu.RLock()
	fs := p.onShutdown
	p.mu.RUnlock()
	if len(fs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	for i := len(fs) - 1; i >= 0; i-- {
		if err := safely(func() error { return fs[i](ctx) }); err != nil {
			log.Warn().Err(err).Msg("shutdown function failed")
		}
	}
}

// InstanceID returns the id of this instance (its micro service id), empty
// before Run.
func (p *Plugin) InstanceID() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.instanceID
}

// OnInit sets the init handler, called when the broker (re)registers the
// plugin. The map it returns is stored as the plugin's metadata. Without a
// handler, init succeeds with no metadata.
func (p *Plugin) OnInit(h func(ctx context.Context, req schemas.InitRequest) (map[string]any, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onInit = h
}

// OnConfig sets the config handler. It is called with the broker-validated
// configuration both when the broker sends the config verb (at registration
// and after `busctl plugins config`) and when another instance's change is
// pushed through the config bucket; an instance never applies the same
// configuration twice in a row. Returning an error rejects the
// configuration: on the config verb the broker puts the plugin in ERROR with
// the error; on a push the error is logged and the previous configuration
// stays. Without a handler every configuration is accepted. An instance
// handles no event before its config handler accepted the stored
// configuration; when it rejects that one at start, the SDK retries it
// (read anew each time) with backoff, and events wait.
func (p *Plugin) OnConfig(h func(ctx context.Context, cfg Config) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onConfig = h
}

// OnVerify sets the verify handler, called after config to ask whether the
// plugin can work (credentials valid, endpoint reachable). An error answers
// "not ready" with the error's message, which the broker keeps as the
// plugin's last error. Without a handler the plugin is always ready.
func (p *Plugin) OnVerify(h func(ctx context.Context) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onVerify = h
}

// HandleAction sets the handler of an action command. Commands the manifest
// declares but no handler serves, and calls of unknown commands, are
// answered with unknown_action. HandleAction panics when command is empty, h
// is nil or the command already has a handler: those are programming errors.
func (p *Plugin) HandleAction(command string, h ActionHandler) {
	if command == "" {
		panic("sdk: HandleAction: empty command")
	}
	if h == nil {
		panic("sdk: HandleAction: nil handler for " + command)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.actions[command]; dup {
		panic("sdk: HandleAction: a handler for " + command + " is already registered")
	}
	p.actions[command] = h
}

// HandleEvent sets the handler of a CloudEvent type. eventType is an exact
// type ("io.plugbus.alert.v1.fired"), a prefix pattern ending in ".*" that
// matches one more level ("io.plugbus.alert.v1.*"), or "*" for every type;
// the most specific match wins. Events of a type with no handler are
// acknowledged and counted as ignored. The manifest's events.types decide
// what the broker delivers; HandleEvent only routes. HandleEvent panics on an
// empty or malformed pattern, a nil handler or a duplicate.
func (p *Plugin) HandleEvent(eventType string, h EventHandler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.events.add(eventType, h); err != nil {
		panic("sdk: HandleEvent: " + err.Error())
	}
}

// Config returns a copy of the configuration the plugin last applied
// (empty, never nil, before any).
func (p *Plugin) Config() Config {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return cloneConfig(p.cfg)
}

// State returns the plugin's state as the broker last reported it to this
// instance: from the register reply, then from the plugin's registry record.
// It is empty before the first registration.
func (p *Plugin) State() schemas.PluginState {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.state
}

// Ready returns a channel closed once the instance is registered, its
// configuration is in sync with the registry and, when the plugin consumes
// events and is ACTIVE, its consumer is running. A plugin in ERROR is ready
// too (it waits for a configuration); it starts consuming events once the
// broker reports it ACTIVE. Events are consumed only once the config
// handler has accepted the stored configuration, so no event handler sees
// an empty or previous one; an instance whose config handler rejected the
// stored configuration is ready, and its events wait while the SDK retries
// that configuration with backoff.
func (p *Plugin) Ready() <-chan struct{} { return p.ready }

func (p *Plugin) actionHandler(command string) ActionHandler {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.actions[command]
}

func (p *Plugin) eventHandler(eventType string) EventHandler {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.events.lookup(eventType)
}

// markReady closes Ready and says so in the service metadata, where hostd
// looks for it.
func (p *Plugin) markReady() {
	p.readyOnce.Do(func() {
		close(p.ready)
		if svc := p.service(); svc != nil {
			svc.SetMetadata(wire.MetadataReady, "true")
		}
	})
}

func (p *Plugin) service() *wire.Service {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.svc
}
func (p *Plugin) markActive() { p.activeOnce.Do(func() { close(p.active) }) }

func (p *Plugin) markConfigured() { p.configuredOnce.Do(func() { close(p.configured) }) }

// isConfigured reports whether the stored configuration has been applied.
func (p *Plugin) isConfigured() bool {
	select {
	case <-p.configured:
		return true
	default:
		return false
	}
}

func (p *Plugin) setConsumer(c jetstream.Consumer) {
	p.consMu.Lock()
	defer p.consMu.Unlock()
	p.cons = c
}

func (p *Plugin) consumer() jetstream.Consumer {
	p.consMu.Lock()
	defer p.consMu.Unlock()
	return p.cons
}

// requestReregister asks the re-register loop to register again; requests
// made while one is pending collapse into it.
func (p *Plugin) requestReregister() {
	select {
	case p.reregister <- struct{}{}:
	default:
	}
}

// observeRecord records the state the broker reports in a plugin record.
// Records older than the last one seen are ignored.
func (p *Plugin) observeRecord(rec schemas.PluginRecord) schemas.PluginState {
	p.mu.Lock()
	if rec.State != "" && !rec.UpdatedAt.Before(p.stateAt) {
		p.state = rec.State
		p.stateAt = rec.UpdatedAt
	}
	state, svc := p.state, p.svc
	p.mu.Unlock()
	if svc != nil && state != "" {
		svc.SetMetadata(wire.MetadataState, string(state))
	}
	if state == schemas.StateActive {
		p.markActive()
	}
	return state
}
