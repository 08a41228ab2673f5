package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/broker"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// registerConcurrency is how many registrations are in flight at once when
// the scale case registers its plugins: 32 plugin processes starting
// together, as hostd starts them on a busy host.
const registerConcurrency = 32

// Targets of the scale case (docs/performance.md, "Targets").
const (
	// scaleTargetRegisterMs bounds registering 10,000 plugins.
	scaleTargetRegisterMs = 5000
	// scaleTargetRSSKiB bounds the broker's memory per registered plugin,
	// with 10,000 registered (with fewer, the process's fixed costs are
	// spread over fewer plugins).
	scaleTargetRSSKiB = 32
	// scaleTargetFlat bounds a latency at the largest registry over the
	// same at the smallest: flat within 25 %.
	scaleTargetFlat = 1.25
	// scaleTargetPageKiB bounds a plugins.list reply: NATS's default max
	// payload (1 MiB).
	scaleTargetPageKiB = 1024
	// scaleRSSMin is the smallest registry whose memory per plugin is
	// reported (below it the figure is the noise of the process's RSS).
	scaleRSSMin = 1000
)

// scaleSizes are the registry sizes the scale case measures.
func (r *runner) scaleSizes() []int {
	if r.cfg.Quick {
		return []int{10, 100, 1000}
	}
	return []int{10, 1000, 10000}
}

// scaleManifest is the i-th plugin of the registry: an action of its own on
// machines (so the action index grows with the registry) and, one in ten,
// a step on alert.pre_notify, a chain neither measured call runs.
func scaleManifest(i int) schemas.Manifest {
	name := fmt.Sprintf("scale-%05d", i)
	m := schemas.Manifest{Name: name, Version: "1.0.0", Description: "busbench scale plugin",
		Actions: []schemas.ActionSpec{{Command: name, Model: "machines"}}}
	if i%10 == 0 {
		m.Hooks = []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify}}
	}
	return m
}

// The plugins whose calls are timed at every registry size, registered
// before the others.
const (
	scaleActionProbe = "scale-action"
	scaleHookProbe   = "scale-gate"
)

func scaleProbes() []schemas.Manifest {
	gate := schemas.Manifest{Name: scaleHookProbe, Version: "1.0.0", Description: "busbench scale gate",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}}
	return []schemas.Manifest{actionManifest(scaleActionProbe), gate}
}

// scaleMetrics are the figures of one registry size.
type scaleMetrics struct {
	reg, regP50, action, chain, deploy, list, page, rss, rssTotal *Metric
}

func (r *runner) scaleMetricsFor(n int) *scaleMetrics {
	m := &scaleMetrics{}
	var regTarget *Target
	if n >= 10000 {
		regTarget = &Target{Kind: "bus_max", Value: scaleTargetRegisterMs}
	}
	m.reg = r.metric(fmt.Sprintf("register %d plugins", n), "ms", false, regTarget)
	m.reg.Note = fmt.Sprintf("%d registering clients at once, each plugin an instance answering init/config/verify (loopback TCP); "+
		"raw: a responder doing the same NATS work per registration (lock ticket create + purge, record read, 5 record writes "+
		"with their 6 events published and acked, the outbox clear, config read + write, init/config/verify requests) "+
		"with the two watches the broker keeps", registerConcurrency)
	m.regP50 = r.metric(fmt.Sprintf("register 1 plugin p50, %d registering", n), "ms", false, nil)
	m.action = r.metric(fmt.Sprintf("machines.action p50, %d plugins registered", n), "ms", false, nil)
	m.action.Note = "the same action plugin, whatever the registry's size; raw: none"
	m.chain = r.metric(fmt.Sprintf("1-step job.pre_deploy chain p50, %d plugins registered", n), "µs", false, nil)
	m.chain.Note = "the chain's duration as the broker records it (jobs.deploy reply), the same hook plugin whatever the registry's size"
	m.deploy = r.metric(fmt.Sprintf("jobs.deploy p50, 1-step chain, %d plugins registered", n), "ms", false, nil)
	m.list = r.metric(fmt.Sprintf("plugins.list every page, %d plugins", n), "ms", false, nil)
	m.list.Note = "sdk/client.ListPlugins walking every page; raw: as many request/replies answering the same pages' bytes"
	m.page = r.metric(fmt.Sprintf("plugins.list largest page, %d plugins", n), "KiB", false, &Target{Kind: "bus_max", Value: scaleTargetPageKiB})
	if n >= scaleRSSMin {
		var rssTarget *Target
		if n >= 10000 {
			rssTarget = &Target{Kind: "bus_max", Value: scaleTargetRSSKiB}
		}
		m.rss = r.metric(fmt.Sprintf("broker RSS per registered plugin, %d plugins", n), "KiB", false, rssTarget)
		m.rss.Note = "(RSS with the plugins registered - RSS with their instances connected, before registering) / plugins; " +
			"raw: the bare nats-server with the same instances and the raw side's records"
	}
	m.rssTotal = r.metric(fmt.Sprintf("broker RSS, %d plugins registered", n), "MiB", false, nil)
	m.rssTotal.Note = "their instances' subscriptions included (they live in the embedded server)"
	return m
}

// scaleRegistry measures the registry at each size on a fresh broker (and
// a fresh bare nats-server for the raw side) per size and run.
func scaleRegistry(ctx context.Context, r *runner, bin string) error {
	sizes := r.scaleSizes()
	mIdle := r.metric("broker RSS idle, fresh", "MiB", false, nil)
	mIdle.Note = "raw: bare nats-server process with JetStream"
	ms := map[int]*scaleMetrics{}
	for _, n := range sizes {
		ms[n] = r.scaleMetricsFor(n)
	}
	lo, hi := sizes[0], sizes[len(sizes)-1]
	flat := func(name string) *Metric {
		m := r.metric(fmt.Sprintf("%s p50 at %d plugins / at %d", name, hi, lo), "x", false, &Target{Kind: "bus_max", Value: scaleTargetFlat})
		m.Note = "flat with the registry's size: within 25 %"
		return m
	}
	flatAction, flatChain := flat("machines.action"), flat("1-step job.pre_deploy chain")
	for run := 0; run < r.cfg.Runs; run++ {
		for _, n := range sizes {
			var pages [][]byte
			if r.bus() {
				var err error
				if pages, err = scaleBus(ctx, r, bin, n, ms[n], mIdle); err != nil {
					return fmt.Errorf("bus, %d plugins: %w", n, err)
				}
			}
			if r.raw() {
				if err := scaleRaw(ctx, r, n, ms[n], mIdle, pages); err != nil {
					return fmt.Errorf("raw, %d plugins: %w", n, err)
				}
			}
		}
		if a, b := ms[lo].action.bus, ms[hi].action.bus; len(a) > run && len(b) > run && a[run] > 0 {
			flatAction.AddBus(b[run] / a[run])
		}
		if a, b := ms[lo].chain.bus, ms[hi].chain.bus; len(a) > run && len(b) > run && a[run] > 0 {
			flatChain.AddBus(b[run] / a[run])
		}
	}
	for _, n := range sizes {
		m := ms[n]
		r.logf("%s: raw %s bus %s ms (p50 one %s ms); action %s ms, chain %s µs; list %s ms, largest page %s KiB; RSS %s MiB",
			m.reg.Name, fmtNum(median(m.reg.raw)), fmtNum(median(m.reg.bus)), fmtNum(median(m.regP50.bus)),
			fmtNum(median(m.action.bus)), fmtNum(median(m.chain.bus)), fmtNum(median(m.list.bus)), fmtNum(median(m.page.bus)),
			fmtNum(median(m.rssTotal.bus)))
		if m.rss != nil {
			r.logf("%s: raw %s bus %s KiB", m.rss.Name, fmtNum(median(m.rss.raw)), fmtNum(median(m.rss.bus)))
		}
	}
	r.logf("%s: %s; %s: %s", flatAction.Name, fmtNum(median(flatAction.bus)), flatChain.Name, fmtNum(median(flatChain.bus)))
	return nil
}

// scaleInstances starts the instances of the probes and of n scale
// plugins (fake plugins, NATS micro services) on connections of their own,
// about a thousand per connection, and returns the manifests in order.
func scaleInstances(url string, n int, conns *[]*nats.Conn) ([]schemas.Manifest, error) {
	count := n/1000 + 2
	for i := range count {
		nc, err := dial(url, nats.Name(fmt.Sprintf("scale-plugins-%d", i)))
		if err != nil {
			return nil, err
		}
		*conns = append(*conns, nc)
	}
	own := (*conns)[len(*conns)-count:]
	ms := scaleProbes()
	for i := range n {
		ms = append(ms, scaleManifest(i))
	}
	for i, m := range ms {
		if _, err := startFakePlugin(own[i%count], wire.DefaultPrefix, m, continueReply); err != nil {
			return nil, err
		}
	}
	for _, nc := range own {
		if err := nc.Flush(); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// registerAll registers ms (after the first skip ones) from clients, at
// most len(clients) at once, and returns the time it took and each
// registration's.
func registerAll(ctx context.Context, clients []*nats.Conn, ms []schemas.Manifest, do func(nc *nats.Conn, m schemas.Manifest) (time.Duration, error)) (time.Duration, *Latencies, error) {
	var mu sync.Mutex
	l := NewLatencies(len(ms))
	var next atomic.Int64
	start := time.Now()
	err := parallel(ctx, len(ms), len(clients), func(i int) error {
		nc := clients[int(next.Add(1)-1)%len(clients)]
		d, err := do(nc, ms[i])
		mu.Lock()
		l.Add(d)
		mu.Unlock()
		return err
	})
	return time.Since(start), l, err
}

// settle lets the process's memory settle before its RSS is read.
const settle = time.Second

func scaleBus(ctx context.Context, r *runner, bin string, n int, m *scaleMetrics, mIdle *Metric) ([][]byte, error) {
	c, err := startChildBroker(ctx, bin)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	rss, err := c.RSS()
	if err != nil {
		return nil, err
	}
	mIdle.AddBus(rss)
	ms, err := scaleInstances(c.URL, n, &conns)
	if err != nil {
		return nil, err
	}
	time.Sleep(settle)
	rssInst, err := c.RSS()
	if err != nil {
		return nil, err
	}
	clients := make([]*nats.Conn, registerConcurrency)
	for i := range clients {
		if clients[i], err = dial(c.URL, nats.Name("scale-client")); err != nil {
			return nil, err
		}
		conns = append(conns, clients[i])
	}
	reg := func(nc *nats.Conn, m schemas.Manifest) (time.Duration, error) {
		return register(ctx, nc, wire.DefaultPrefix, m)
	}
	probes := len(scaleProbes())
	if _, _, err := registerAll(ctx, clients[:1], ms[:probes], reg); err != nil {
		return nil, err
	}
	took, l, err := registerAll(ctx, clients, ms[probes:], reg)
	if err != nil {
		return nil, err
	}
	m.reg.AddBus(ms1(took))
	m.regP50.AddBus(ms1(l.Percentile(50)))

	client := clients[0]
	actBody := mustJSON(schemas.MachineActionRequest{Machine: "m1", Command: "noop"})
	act := NewLatencies(200)
	for i := range 220 {
		t := time.Now()
		msg, err := client.Request(wire.APISubject(wire.DefaultPrefix, schemas.APIMachinesAction), actBody, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("machines.action: %w", err)
		}
		if msg.Header.Get(schemas.HeaderErrorCode) != "" {
			return nil, fmt.Errorf("machines.action: %s", msg.Data)
		}
		if i >= 20 {
			act.Add(time.Since(t))
		}
	}
	m.action.AddBus(ms1(act.Percentile(50)))
	deploy := schemas.JobDeployRequest{Name: "scale", Image: "registry.example.com/bench/app:1.0.0"}
	dep, chain := NewLatencies(200), NewLatencies(200)
	for i := range 220 {
		deploy.Version = fmt.Sprintf("v%d", i)
		t := time.Now()
		msg, err := client.Request(wire.APISubject(wire.DefaultPrefix, schemas.APIJobsDeploy), mustJSON(deploy), 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("jobs.deploy: %w", err)
		}
		took := time.Since(t)
		var resp schemas.JobResponse
		if err := wire.DecodeReply(msg, &resp); err != nil {
			return nil, fmt.Errorf("jobs.deploy: %w", err)
		}
		if i < 20 {
			continue
		}
		dep.Add(took)
		for _, ch := range resp.Chains {
			if ch.Hook == schemas.HookJobPreDeploy && len(ch.Steps) == 1 {
				chain.Add(time.Duration(ch.DurationMs * float64(time.Millisecond)))
			}
		}
	}
	if chain.Len() == 0 {
		return nil, fmt.Errorf("jobs.deploy: no 1-step job.pre_deploy chain in the replies")
	}
	m.deploy.AddBus(ms1(dep.Percentile(50)))
	m.chain.AddBus(us(chain.Percentile(50)))

	// plugins.list, every page, as sdk/client.ListPlugins walks them.
	var pages [][]byte
	walks := NewLatencies(10)
	for w := range 10 {
		req := schemas.PluginListRequest{}
		seen := 0
		t := time.Now()
		for {
			msg, err := client.Request(wire.APISubject(wire.DefaultPrefix, schemas.APIPluginsList), mustJSON(req), 30*time.Second)
			if err != nil {
				return nil, fmt.Errorf("plugins.list: %w", err)
			}
			var page schemas.PluginListResponse
			if err := wire.DecodeReply(msg, &page); err != nil {
				return nil, fmt.Errorf("plugins.list: %w", err)
			}
			seen += len(page.Plugins)
			if w == 0 {
				pages = append(pages, msg.Data)
			}
			if page.NextAfter == "" {
				break
			}
			req.After = page.NextAfter
		}
		walks.Add(time.Since(t))
		if seen != len(ms) {
			return nil, fmt.Errorf("plugins.list: %d plugins over every page, want %d", seen, len(ms))
		}
	}
	m.list.AddBus(ms1(walks.Percentile(50)))
	largest := 0
	for _, p := range pages {
		largest = max(largest, len(p))
	}
	m.page.AddBus(float64(largest) / 1024)

	time.Sleep(settle)
	rssN, err := c.RSS()
	if err != nil {
		return nil, err
	}
	m.rssTotal.AddBus(rssN)
	if m.rss != nil {
		m.rss.AddBus((rssN - rssInst) * 1024 / float64(n))
	}
	return pages, nil
}

func ms1(d time.Duration) float64 { return us(d) / 1000 }

// scaleRaw is the raw side at one size: a bare nats-server child, the same
// instances, and a responder doing each registration's NATS work by hand.
func scaleRaw(ctx context.Context, r *runner, n int, m *scaleMetrics, mIdle *Metric, pages [][]byte) error {
	c, err := startChildNATS(ctx, r.cfg.Self)
	if err != nil {
		return err
	}
	defer c.Stop()
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	rss, err := c.RSS()
	if err != nil {
		return err
	}
	mIdle.AddRaw(rss)
	ms, err := scaleInstances(c.URL, n, &conns)
	if err != nil {
		return err
	}
	time.Sleep(settle)
	rssInst, err := c.RSS()
	if err != nil {
		return err
	}
	rnc, err := dial(c.URL, nats.Name("raw-registrar"))
	if err != nil {
		return err
	}
	conns = append(conns, rnc)
	const subject = "bench.raw.register"
	if err := rawRegistrar(ctx, rnc, subject); err != nil {
		return err
	}
	clients := make([]*nats.Conn, registerConcurrency)
	for i := range clients {
		if clients[i], err = dial(c.URL, nats.Name("scale-client")); err != nil {
			return err
		}
		conns = append(conns, clients[i])
	}
	reg := func(nc *nats.Conn, m schemas.Manifest) (time.Duration, error) {
		t := time.Now()
		msg, err := nc.Request(subject, mustJSON(schemas.RegisterRequest{Manifest: m}), 60*time.Second)
		if err != nil {
			return 0, err
		}
		if code := msg.Header.Get(schemas.HeaderErrorCode); code != "" {
			return 0, fmt.Errorf("%s: %s", code, msg.Data)
		}
		return time.Since(t), nil
	}
	probes := len(scaleProbes())
	if _, _, err := registerAll(ctx, clients[:1], ms[:probes], reg); err != nil {
		return err
	}
	took, l, err := registerAll(ctx, clients, ms[probes:], reg)
	if err != nil {
		return err
	}
	m.reg.AddRaw(ms1(took))
	m.regP50.AddRaw(ms1(l.Percentile(50)))
	if len(pages) > 0 {
		// The bus's pages, answered by hand, one request each.
		for i, p := range pages {
			if _, err := rnc.Subscribe(fmt.Sprintf("bench.raw.list.%d", i), func(msg *nats.Msg) { _ = msg.Respond(p) }); err != nil {
				return err
			}
		}
		if err := rnc.Flush(); err != nil {
			return err
		}
		walks := NewLatencies(10)
		for range 10 {
			t := time.Now()
			for i := range pages {
				if _, err := clients[0].Request(fmt.Sprintf("bench.raw.list.%d", i), []byte(`{}`), 30*time.Second); err != nil {
					return err
				}
			}
			walks.Add(time.Since(t))
		}
		m.list.AddRaw(ms1(walks.Percentile(50)))
	}
	time.Sleep(settle)
	rssN, err := c.RSS()
	if err != nil {
		return err
	}
	m.rssTotal.AddRaw(rssN)
	if m.rss != nil {
		m.rss.AddRaw((rssN - rssInst) * 1024 / float64(n))
	}
	return nil
}

// rawRegistrar answers registration requests on subject doing by hand the
// NATS work the broker does for one (broker/registry.go, buslock.go,
// commit.go), without the broker's logic: a lock ticket created in a locks
// bucket (and purged at the end, leaving a marker), the record read, then
// written for each state (REGISTERED, INITIALIZING, CONFIGURING, VERIFYING,
// ACTIVE) with its events published and their acks awaited before the next
// step, the last write followed by the one clearing the outbox; the config
// read and written; init, config and verify requests to the plugin's
// instance. Two watches follow the plugins and locks buckets, as the
// broker's registry cache and lock view do. Each request runs on its own
// goroutine, at most broker.DefaultMaxConcurrency at once.
func rawRegistrar(ctx context.Context, nc *nats.Conn, subject string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, eventStreamConfig(wire.DefaultPrefix)); err != nil {
		return err
	}
	kvs := map[string]jetstream.KeyValue{}
	for _, kc := range []jetstream.KeyValueConfig{
		{Bucket: schemas.BucketPlugins, History: 5, Storage: jetstream.FileStorage},
		{Bucket: schemas.BucketConfigs, History: 5, Storage: jetstream.FileStorage},
		{Bucket: schemas.BucketLocks, History: 1, Storage: jetstream.FileStorage, LimitMarkerTTL: time.Minute},
	} {
		if kvs[kc.Bucket], err = js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return err
		}
	}
	plugins, configs, locks := kvs[schemas.BucketPlugins], kvs[schemas.BucketConfigs], kvs[schemas.BucketLocks]
	for _, kv := range []jetstream.KeyValue{plugins, locks} {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			return err
		}
		go func() {
			for range w.Updates() {
			}
		}()
	}
	registered, err := encodeCore(wire.DefaultPrefix, schemas.TypePluginRegistered, schemas.PluginRegisteredData{Name: "scale-00000", Version: "1.0.0"})
	if err != nil {
		return err
	}
	changed, err := encodeCore(wire.DefaultPrefix, schemas.TypePluginStateChanged,
		schemas.PluginStateChangedData{Name: "scale-00000", Version: "1.0.0", From: schemas.StateRegistered, To: schemas.StateInitializing})
	if err != nil {
		return err
	}
	type withOutbox struct {
		schemas.PluginRecord
		Pending []json.RawMessage `json:"_pending,omitempty"`
	}
	publish := func(tmpls ...*nats.Msg) error {
		fs := make([]jetstream.PubAckFuture, 0, len(tmpls))
		for _, t := range tmpls {
			f, err := js.PublishMsgAsync(rawCopy(t))
			if err != nil {
				return err
			}
			fs = append(fs, f)
		}
		for _, f := range fs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	call := func(name, verb string, body []byte) error {
		msg, err := nc.Request(wire.PluginSubject(wire.DefaultPrefix, name, verb), body, 10*time.Second)
		if err != nil {
			return fmt.Errorf("%s %s: %w", verb, name, err)
		}
		if code := msg.Header.Get(schemas.HeaderErrorCode); code != "" {
			return fmt.Errorf("%s %s: %s", verb, name, code)
		}
		return nil
	}
	work := func(data []byte) ([]byte, error) {
		var req schemas.RegisterRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, err
		}
		name := req.Manifest.Name
		ticket := "t." + nuid.Next()
		trev, err := locks.Create(ctx, ticket, mustJSON(schemas.LockTicket{Object: "plugin/" + name, Lease: "raw", Broker: "raw"}))
		if err != nil {
			return nil, err
		}
		if _, err := plugins.Get(ctx, name); err == nil {
			return nil, fmt.Errorf("%s is registered", name)
		}
		rec := schemas.PluginRecord{Name: name, Version: req.Manifest.Version, Manifest: req.Manifest, RegisteredAt: time.Now().UTC()}
		var rev uint64
		step := func(state schemas.PluginState, tmpls ...*nats.Msg) error {
			rec.State, rec.UpdatedAt = state, time.Now().UTC()
			out := withOutbox{PluginRecord: rec}
			for _, t := range tmpls {
				out.Pending = append(out.Pending, t.Data)
			}
			var err error
			if rev == 0 {
				rev, err = plugins.Create(ctx, name, mustJSON(out))
			} else {
				rev, err = plugins.Update(ctx, name, mustJSON(out), rev)
			}
			if err != nil {
				return err
			}
			return publish(tmpls...)
		}
		if err := step(schemas.StateRegistered, registered, changed); err != nil {
			return nil, err
		}
		if err := step(schemas.StateInitializing, changed); err != nil {
			return nil, err
		}
		if err := call(name, schemas.VerbInit, mustJSON(schemas.InitRequest{Name: name, Version: rec.Version})); err != nil {
			return nil, err
		}
		if err := step(schemas.StateConfiguring, changed); err != nil {
			return nil, err
		}
		if _, err := configs.Get(ctx, name); err == nil {
			return nil, fmt.Errorf("%s has a config", name)
		}
		if err := call(name, schemas.VerbConfig, []byte(`{"config":{}}`)); err != nil {
			return nil, err
		}
		if _, err := configs.Create(ctx, name, []byte(`{}`)); err != nil {
			return nil, err
		}
		if err := step(schemas.StateVerifying, changed); err != nil {
			return nil, err
		}
		if err := call(name, schemas.VerbVerify, []byte(`{}`)); err != nil {
			return nil, err
		}
		if err := step(schemas.StateActive, changed); err != nil {
			return nil, err
		}
		if _, err := plugins.Update(ctx, name, mustJSON(rec), rev); err != nil {
			return nil, err
		}
		if err := locks.Purge(ctx, ticket, jetstream.LastRevision(trev), jetstream.PurgeTTL(time.Minute)); err != nil {
			return nil, err
		}
		return mustJSON(schemas.RegisterResponse{Plugin: rec, Changed: true}), nil
	}
	sem := make(chan struct{}, broker.DefaultMaxConcurrency)
	if _, err := nc.Subscribe(subject, func(msg *nats.Msg) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			reply, err := work(msg.Data)
			if err != nil {
				_ = msg.RespondMsg(wire.ReplyMsg(msg.Reply, nil, err))
				return
			}
			_ = msg.Respond(reply)
		}()
	}); err != nil {
		return err
	}
	return nc.Flush()
}
