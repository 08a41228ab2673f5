package hostd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/fsnotify/fsnotify"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/hostd/supervisor"
	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/internal/version"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Options configure a Daemon.
type Options struct {
	// ConfigPath is the config file; hostd reloads it when it changes.
	ConfigPath string
	// Logger receives hostd's logs and its plugins' re-logged lines.
	Logger zerolog.Logger
	// Credentials, when set, returns the credentials file a plugin
	// connects with. Without it, a hostd with credentials of its own
	// (Config.Creds: the bus has identities) obtains each plugin's from the
	// broker, and one without runs its plugins without credentials.
	Credentials func(ctx context.Context, plugin string) (string, error)
	// TLS, when set, replaces the config file's tls (hostd's --tlscert,
	// --tlskey and --tlsca flags).
	TLS *TLSConfig
	// Policy is the restart policy (default supervisor.DefaultPolicy).
	Policy *supervisor.Policy
	// ReadyPoll is how often a starting instance's readiness is checked
	// (default 200ms).
	ReadyPoll time.Duration
}

// Daemon is one hostd: it keeps this host's plugins running as the config
// file and the operators' overrides say, and reports the host.
type Daemon struct {
	opts Options
	log  zerolog.Logger

	mu       sync.Mutex
	cfg      Config
	controls map[string]schemas.HostControl // by plugin
	units    map[string]*unit               // by plugin
	idle     map[string]schemas.PluginInstance
	started  time.Time
	defines  defineCache

	nc      *nats.Conn
	hosts   jetstream.KeyValue
	hostctl jetstream.KeyValue

	reconcileCh chan struct{}
	reportCh    chan struct{}
	ready       chan struct{}
	readyOnce   sync.Once
}

// unit is one plugin running here: its instances' supervisors.
type unit struct {
	name     string
	key      string // what it runs; a change restarts it
	version  string
	binary   string
	restart  string // the last restart token acted on
	cancel   context.CancelFunc
	done     chan struct{}
	sups     []*supervisor.Supervisor
	stopping bool
}

// New checks the options and reads the config file; nothing starts until
// Run.
func New(opts Options) (*Daemon, error) {
	if opts.ConfigPath == "" {
		return nil, fmt.Errorf("%w: no config file", ErrInvalidConfig)
	}
	cfg, err := LoadConfig(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.TLS != nil {
		if (opts.TLS.Cert == "") != (opts.TLS.Key == "") {
			return nil, fmt.Errorf("%w: --tlscert and --tlskey go together", ErrInvalidConfig)
		}
		cfg.TLS = opts.TLS
	}
	if opts.ReadyPoll <= 0 {
		opts.ReadyPoll = 200 * time.Millisecond
	}
	if opts.Policy != nil {
		if err := opts.Policy.Validate(); err != nil {
			return nil, err
		}
	}
	return &Daemon{
		opts: opts, cfg: cfg,
		log:         opts.Logger.With().Str(logging.FieldComponent, "hostd").Str(logging.FieldHost, cfg.Host).Logger(),
		controls:    map[string]schemas.HostControl{},
		units:       map[string]*unit{},
		idle:        map[string]schemas.PluginInstance{},
		reconcileCh: make(chan struct{}, 1),
		reportCh:    make(chan struct{}, 1),
		ready:       make(chan struct{}),
	}, nil
}

// Host returns the host's name.
func (d *Daemon) Host() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Host
}

// Ready is closed once hostd is connected, has reported its host and has
// made its first reconcile.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Reload rereads the config file now (hostd also does on its own when the
// file changes).
func (d *Daemon) Reload() { d.reload() }

// Run connects to the bus, reaps what a killed hostd left behind, and
// keeps the host's plugins running until ctx ends; then it stops every
// plugin gracefully, reports the host STOPPED and returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now().UTC()
	cfg := d.config()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", cfg.StateDir, err)
	}
	if killed, err := supervisor.ReapOrphans(cfg.StateDir); err != nil {
		d.log.Warn().Err(err).Msg("cannot reap what a previous hostd left behind")
	} else if len(killed) > 0 {
		d.log.Warn().Ints(logging.FieldPID, killed).Msg("killed plugin processes a previous hostd left behind")
	}
	if err := d.connect(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer d.nc.Close()

	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(ctx)
	bg.Go(func() { d.watchControls(bgCtx) })
	bg.Go(func() { d.watchConfigFile(bgCtx) })
	bg.Go(func() { d.reportLoop(bgCtx) })

	d.requestReconcile()
	// A periodic pass too: a binary that appeared, credentials that are
	// issued now.
	again := time.NewTicker(10 * time.Second)
	defer again.Stop()
	for {
		select {
		case <-again.C:
			d.requestReconcile()
		case <-ctx.Done():
			d.log.Info().Msg("hostd stopping: stopping every plugin")
			d.stopAll()
			stopBG()
			bg.Wait()
			d.writeHost(context.Background(), schemas.HostStopped)
			d.log.Info().Msg("hostd stopped")
			return nil
		case <-d.reconcileCh:
			d.reconcile(ctx)
			d.readyOnce.Do(func() { close(d.ready) })
		}
	}
}

func (d *Daemon) config() Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// connect connects to NATS, retrying while it is not up, and binds the
// broker's host buckets, waiting for the broker to create them.
func (d *Daemon) connect(ctx context.Context, cfg Config) error {
	opts := []nats.Option{
		nats.Name(wire.HostService + "-" + cfg.Host),
		// A host may read its own inboxes only.
		nats.CustomInboxPrefix(wire.InboxPrefix("host", cfg.Host)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			d.log.Error().Err(err).Msg("NATS error (a permissions violation means the host's credentials do not allow it)")
		}),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				d.log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			d.log.Info().Str(logging.FieldNATSURL, nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
			d.requestReport()
		}),
	}
	// A frozen server is left within seconds: the host's heartbeat must
	// not lapse for minutes on it (the broker would mark the host lost).
	opts = append(opts, wire.StaleServerOptions()...)
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if t := cfg.TLS; t != nil {
		if t.Cert != "" {
			opts = append(opts, nats.ClientCert(t.Cert, t.Key))
		}
		if t.CA != "" {
			opts = append(opts, nats.RootCAs(t.CA))
		}
	}
	retry := []backoff.RetryOption{
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 250 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 5 * time.Second}),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			d.log.Warn().Err(err).Str(logging.FieldNATSURL, logging.RedactURL(cfg.NATSURL)).Dur(logging.FieldDelay, next).Msg("cannot reach the bus yet; retrying")
		}),
	}
	nc, err := backoff.Retry(ctx, func() (*nats.Conn, error) {
		nc, err := nats.Connect(cfg.NATSURL, opts...)
		if err != nil && !errors.Is(err, nats.ErrNoServers) && !errors.Is(err, nats.ErrTimeout) {
			return nil, backoff.Permanent(err)
		}
		return nc, err
	}, retry...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", logging.RedactURL(cfg.NATSURL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	bind := func(name string) (jetstream.KeyValue, error) {
		return backoff.Retry(ctx, func() (jetstream.KeyValue, error) {
			kv, err := js.KeyValue(ctx, name)
			if err != nil && ctx.Err() == nil {
				d.log.Debug().Err(err).Str("bucket", name).Msg("waiting for the broker to create the bucket")
			}
			return kv, err
		}, retry[:2]...)
	}
	if d.hosts, err = bind(schemas.BucketHosts); err == nil {
		d.hostctl, err = bind(schemas.BucketHostControl)
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("bind the host buckets (is the broker running?): %w", err)
	}
	d.nc = nc
	d.log.Info().Str(logging.FieldNATSURL, nc.ConnectedUrlRedacted()).Msg("hostd connected")
	return nil
}

func (d *Daemon) requestReconcile() {
	select {
	case d.reconcileCh <- struct{}{}:
	default:
	}
}

func (d *Daemon) requestReport() {
	select {
	case d.reportCh <- struct{}{}:
	default:
	}
}

// reload rereads the config file; a bad file is reported and the current
// config kept.
func (d *Daemon) reload() {
	cfg, err := LoadConfig(d.opts.ConfigPath)
	if err != nil {
		d.log.Error().Err(err).Msg("config file not reloaded; keeping the current one")
		return
	}
	d.mu.Lock()
	old := d.cfg
	if d.opts.TLS != nil {
		cfg.TLS = d.opts.TLS
	}
	if cfg.Host != old.Host || cfg.NATSURL != old.NATSURL || cfg.Prefix != old.Prefix || cfg.StateDir != old.StateDir || cfg.Creds != old.Creds ||
		!reflect.DeepEqual(cfg.TLS, old.TLS) {
		d.mu.Unlock()
		d.log.Error().Msg("config file changes host, nats_url, prefix, creds, tls or state_dir: restart hostd for those; the rest is applied")
		d.mu.Lock()
		cfg.Host, cfg.NATSURL, cfg.Prefix, cfg.StateDir, cfg.Creds, cfg.TLS = old.Host, old.NATSURL, old.Prefix, old.StateDir, old.Creds, old.TLS
	}
	d.cfg = cfg
	d.mu.Unlock()
	d.log.Info().Int("plugins", len(cfg.Plugins)).Msg("config file reloaded")
	d.requestReconcile()
}

// watchConfigFile reloads the config when its file changes (the folder is
// watched, so editors that replace the file are seen too).
func (d *Daemon) watchConfigFile(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn().Err(err).Msg("cannot watch the config file; send SIGHUP to reload it")
		return
	}
	defer w.Close()
	abs, _ := filepath.Abs(d.opts.ConfigPath)
	if err := w.Add(filepath.Dir(abs)); err != nil {
		d.log.Warn().Err(err).Msg("cannot watch the config file; send SIGHUP to reload it")
		return
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(200 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			d.log.Warn().Err(err).Msg("config file watch")
		case <-debounce:
			debounce = nil
			d.reload()
		}
	}
}

// watchControls follows the operators' overrides for this host.
func (d *Daemon) watchControls(ctx context.Context) {
	host := d.Host()
	for ctx.Err() == nil {
		w, err := d.hostctl.Watch(ctx, host+".>")
		if err != nil {
			d.log.Warn().Err(err).Msg("cannot watch the overrides; retrying")
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				d.requestReconcile()
				continue
			}
			plugin := strings.TrimPrefix(e.Key(), host+".")
			d.mu.Lock()
			var c schemas.HostControl
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &c) == nil {
				d.controls[plugin] = c
			} else {
				delete(d.controls, plugin)
			}
			d.mu.Unlock()
			d.requestReconcile()
		}
		_ = w.Stop()
		if ctx.Err() == nil && !sleep(ctx, time.Second) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// desired is what one config entry should be on this host.
type desired struct {
	entry    PluginConfig
	name     string
	version  string
	key      string
	enabled  bool
	restart  string
	notRun   *schemas.PluginInstance // why it does not run, when it does not
	instance int
}

// reconcile brings the running plugins to what the config and the
// overrides say.
func (d *Daemon) reconcile(ctx context.Context) {
	d.mu.Lock()
	cfg := d.cfg
	controls := make(map[string]schemas.HostControl, len(d.controls))
	for k, v := range d.controls {
		controls[k] = v
	}
	d.mu.Unlock()

	want := map[string]desired{}
	idle := map[string]schemas.PluginInstance{}
	for i, e := range cfg.Plugins {
		label := e.Name
		if label == "" {
			label = filepath.Base(e.Binary)
		}
		m, err := d.defines.manifest(ctx, e.Binary)
		switch {
		case err != nil:
			d.log.Error().Err(err).Str(logging.FieldPlugin, label).Msg("plugin not started: its define output is not a valid manifest")
			idle[label] = schemas.PluginInstance{Plugin: label, Instance: "-", State: schemas.InstanceInvalid, Binary: e.Binary, Reason: err.Error()}
			continue
		case e.Name != "" && e.Name != m.Name:
			reason := fmt.Sprintf("plugins[%d] is named %s but %s define says %s", i, e.Name, e.Binary, m.Name)
			d.log.Error().Str(logging.FieldPlugin, label).Msg("plugin not started: " + reason)
			idle[label] = schemas.PluginInstance{Plugin: label, Instance: "-", State: schemas.InstanceInvalid, Binary: e.Binary, Reason: reason}
			continue
		}
		c := controls[m.Name]
		dw := desired{entry: e, name: m.Name, version: m.Version, enabled: e.IsEnabled(), restart: c.Restart, instance: e.Instances}
		if c.Enabled != nil {
			dw.enabled = *c.Enabled
		}
		if ok, why := placed(m.Components, cfg.Labels); !ok {
			idle[m.Name] = schemas.PluginInstance{Plugin: m.Name, Instance: "-", State: schemas.InstanceNotPlaced, Binary: e.Binary, Version: m.Version, Reason: why}
			continue
		}
		if !dw.enabled {
			why := "disabled in the config file"
			if c.Enabled != nil {
				why = "disabled by an operator"
			}
			idle[m.Name] = schemas.PluginInstance{Plugin: m.Name, Instance: "-", State: schemas.InstanceDisabled, Binary: e.Binary, Version: m.Version, Reason: why}
			continue
		}
		k, _ := json.Marshal(struct {
			B    string
			A    []string
			E    map[string]string
			C    map[string]any
			N    int
			V    string
			S, G schemas.Duration
		}{e.Binary, e.listenArgs(), e.Env, e.Config, e.Instances, m.Version, cfg.StartTimeout, cfg.StopGrace})
		dw.key = string(k)
		want[m.Name] = dw
	}

	d.mu.Lock()
	d.idle = idle
	var stop []*unit
	for name, u := range d.units {
		if w, ok := want[name]; !ok || w.key != u.key {
			stop = append(stop, u)
			delete(d.units, name)
		}
	}
	d.mu.Unlock()
	for _, u := range stop {
		d.log.Info().Str(logging.FieldPlugin, u.name).Msg("stopping plugin")
		u.cancel()
		<-u.done
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		w := want[name]
		d.mu.Lock()
		u := d.units[name]
		d.mu.Unlock()
		if u == nil {
			u, err := d.start(ctx, cfg, w)
			if err != nil {
				d.log.Error().Err(err).Str(logging.FieldPlugin, name).Msg("cannot start plugin")
				d.mu.Lock()
				d.idle[name] = schemas.PluginInstance{Plugin: name, Instance: "-", State: schemas.InstanceInvalid, Binary: w.entry.Binary, Reason: err.Error()}
				d.mu.Unlock()
				continue
			}
			d.mu.Lock()
			d.units[name] = u
			d.mu.Unlock()
			continue
		}
		if w.restart != u.restart {
			u.restart = w.restart
			d.log.Info().Str(logging.FieldPlugin, name).Msg("restarting plugin, as an operator asked")
			for _, s := range u.sups {
				s.Restart()
			}
		}
	}
	d.requestReport()
}

// start starts a plugin's instances.
func (d *Daemon) start(ctx context.Context, cfg Config, w desired) (*unit, error) {
	args := w.entry.listenArgs()
	configEnv, err := w.entry.configEnv()
	if err != nil {
		return nil, err
	}
	var creds string
	switch {
	case d.opts.Credentials != nil:
		creds, err = d.opts.Credentials(ctx, w.name)
	case cfg.Creds != "":
		// The bus has identities: each plugin gets its own.
		creds, err = d.pluginCreds(ctx, cfg, w.name)
	}
	if err != nil {
		return nil, fmt.Errorf("credentials of %s: %w", w.name, err)
	}
	env := []string{wire.EnvNATSURL + "=" + cfg.NATSURL, wire.EnvPrefix + "=" + cfg.Prefix, wire.EnvHost + "=" + cfg.Host}
	if creds != "" {
		env = append(env, wire.EnvNATSCreds+"="+creds)
	}
	if configEnv != "" {
		env = append(env, configEnv)
	}
	if t := cfg.TLS; t != nil {
		for _, kv := range [][2]string{{wire.EnvNATSCert, t.Cert}, {wire.EnvNATSKey, t.Key}, {wire.EnvNATSCA, t.CA}} {
			if kv[1] != "" {
				env = append(env, kv[0]+"="+kv[1])
			}
		}
	}
	keys := make([]string, 0, len(w.entry.Env))
	for k := range w.entry.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+w.entry.Env[k])
	}
	uctx, cancel := context.WithCancel(context.Background())
	u := &unit{name: w.name, key: w.key, version: w.version, binary: w.entry.Binary, restart: w.restart, cancel: cancel, done: make(chan struct{})}
	policy := supervisor.DefaultPolicy()
	if d.opts.Policy != nil {
		policy = *d.opts.Policy
	}
	var wg sync.WaitGroup
	for i := 1; i <= w.instance; i++ {
		inst := fmt.Sprint(i)
		spec := supervisor.Spec{
			Plugin: w.name, Instance: inst, Binary: w.entry.Binary, Args: args,
			Env:          append(append([]string(nil), env...), wire.EnvInstance+"="+inst),
			StartTimeout: cfg.StartTimeout.D(), StopGrace: cfg.StopGrace.D(),
		}
		s, err := supervisor.New(spec,
			supervisor.WithPolicy(policy),
			supervisor.WithStateDir(cfg.StateDir),
			supervisor.WithReadiness(d.readiness(cfg, w.name, inst)),
			supervisor.WithLines(d.lines(cfg, w.name, inst)),
			supervisor.WithOnChange(func(st supervisor.Status) { d.onChange(st) }),
		)
		if err != nil {
			cancel()
			return nil, err
		}
		u.sups = append(u.sups, s)
		wg.Go(func() { _ = s.Run(uctx) })
	}
	go func() { wg.Wait(); close(u.done) }()
	d.log.Info().Str(logging.FieldPlugin, w.name).Str(logging.FieldVersion, w.version).Int("instances", w.instance).Msg("starting plugin")
	return u, nil
}

// pluginCreds obtains new credentials for a plugin placed on this host
// from the broker and writes them 0600 under the state dir.
func (d *Daemon) pluginCreds(ctx context.Context, cfg Config, plugin string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var resp schemas.CredsResponse
	subject := wire.HostAPISubject(cfg.Prefix, schemas.APIHostsPluginCreds, cfg.Host)
	if err := wire.Call(cctx, d.nc, subject, schemas.CredsRequest{Name: plugin}, &resp); err != nil {
		return "", err
	}
	dir := filepath.Join(cfg.StateDir, "creds")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, plugin+".creds")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(resp.Creds), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// stopAll stops every plugin, in parallel, and waits.
func (d *Daemon) stopAll() {
	d.mu.Lock()
	units := d.units
	d.units = map[string]*unit{}
	d.mu.Unlock()
	for _, u := range units {
		u.cancel()
	}
	for _, u := range units {
		<-u.done
	}
}

// onChange logs an instance's state change and reports the host.
func (d *Daemon) onChange(st supervisor.Status) {
	ev := d.log.Info()
	switch st.State {
	case supervisor.StateFailed:
		ev = d.log.Error().Str(logging.FieldReason, st.FailureReason)
	case supervisor.StateBackoff:
		ev = d.log.Warn()
		if st.LastExit != nil {
			ev = ev.Str(logging.FieldReason, st.LastExit.Reason)
		}
	}
	ev.Str(logging.FieldPlugin, st.Plugin).Str(logging.FieldInstance, st.Instance).Str(logging.FieldState, string(st.State)).
		Int(logging.FieldPID, st.PID).Int("restarts", st.Restarts).Msg("plugin instance")
	d.requestReport()
}

// readiness says when a started instance is ready: its own service
// answers PING (found by its host and instance metadata) and reports the
// plugin ACTIVE and itself ready.
func (d *Daemon) readiness(cfg Config, plugin, instance string) supervisor.ReadyFunc {
	return func(ctx context.Context, _ int) error {
		t := time.NewTicker(d.opts.ReadyPoll)
		defer t.Stop()
		last := "its service does not answer yet"
		for {
			if ok, why := d.instanceReady(ctx, cfg, plugin, instance); ok {
				return nil
			} else if why != "" {
				last = why
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s", last)
			case <-t.C:
			}
		}
	}
}

func (d *Daemon) instanceReady(ctx context.Context, cfg Config, plugin, instance string) (bool, string) {
	inbox := d.nc.NewRespInbox()
	sub, err := d.nc.SubscribeSync(inbox)
	if err != nil {
		return false, ""
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := d.nc.PublishRequest(wire.PingSubject(wire.PluginService(plugin)), inbox, nil); err != nil {
		return false, ""
	}
	wait, cancel := context.WithTimeout(ctx, d.opts.ReadyPoll)
	defer cancel()
	for {
		m, err := sub.NextMsgWithContext(wait)
		if err != nil {
			return false, ""
		}
		var ping struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(m.Data, &ping) != nil || ping.Metadata[wire.MetadataHost] != cfg.Host || ping.Metadata[wire.MetadataInstance] != instance {
			continue
		}
		state := ping.Metadata[wire.MetadataState]
		if state == string(schemas.StateActive) && ping.Metadata[wire.MetadataReady] == "true" {
			return true, ""
		}
		if state == "" {
			return false, "it has not registered with the broker"
		}
		return false, "the plugin is " + state + " (busctl plugins get " + plugin + " says why)"
	}
}

// report builds the host record.
func (d *Daemon) report(state schemas.HostState) schemas.Host {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := schemas.Host{
		Name: d.cfg.Host, Labels: d.cfg.Labels, HostdVersion: version.Release, State: state,
		StartedAt: d.started, HeartbeatAt: time.Now().UTC(), HeartbeatInterval: d.cfg.HeartbeatInterval,
	}
	names := make([]string, 0, len(d.units)+len(d.idle))
	for n := range d.units {
		names = append(names, n)
	}
	for n := range d.idle {
		if _, running := d.units[n]; !running {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		u, ok := d.units[n]
		if !ok {
			h.Plugins = append(h.Plugins, d.idle[n])
			continue
		}
		for _, s := range u.sups {
			h.Plugins = append(h.Plugins, instanceOf(s.Status(), u))
		}
	}
	return h
}

// instanceOf turns a supervisor's status into the host record's form.
func instanceOf(st supervisor.Status, u *unit) schemas.PluginInstance {
	in := schemas.PluginInstance{
		Plugin: st.Plugin, Instance: st.Instance, State: schemas.InstanceState(st.State), Binary: u.binary, Version: u.version,
		PID: st.PID, Restarts: st.Restarts, StderrTail: st.StderrTail, Reason: st.FailureReason,
	}
	if !st.StartedAt.IsZero() {
		t := st.StartedAt.UTC()
		in.StartedAt = &t
	}
	if e := st.LastExit; e != nil {
		x := &schemas.InstanceExit{Cause: string(e.Cause), Signal: e.Signal, Time: e.Time.UTC(), Reason: e.Reason}
		if e.Cause == supervisor.CauseExited || e.Code != 0 {
			code := e.Code
			x.Code = &code
		}
		in.LastExit = x
		if in.Reason == "" && st.State != supervisor.StateRunning {
			in.Reason = e.Reason
		}
	}
	return in
}

// writeHost writes the host record.
func (d *Daemon) writeHost(ctx context.Context, state schemas.HostState) {
	h := d.report(state)
	body, err := json.Marshal(h)
	if err != nil {
		d.log.Error().Err(err).Msg("encode host record")
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := d.hosts.Put(wctx, h.Name, body); err != nil {
		d.log.Warn().Err(err).Msg("cannot report the host")
	}
}

// reportLoop writes the host record on every change (at most every
// 100ms) and every heartbeat interval.
func (d *Daemon) reportLoop(ctx context.Context) {
	t := time.NewTicker(d.config().HeartbeatInterval.D())
	defer t.Stop()
	for {
		d.writeHost(ctx, schemas.HostUp)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.reportCh:
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
		}
	}
}
