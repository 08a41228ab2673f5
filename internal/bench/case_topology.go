package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Peer is another plugin system measured beside plugbus's real topology,
// doing the same hook work (StampJob) with its plugins as processes:
// bench/peers runs hashicorp/go-plugin over net/rpc and gRPC. The main
// module does not depend on any of them.
type Peer struct {
	// Name is shown in the figures ("go-plugin net/rpc").
	Name string
	// Setup says how it is wired (the results' setup).
	Setup string
	// Start starts n plugin processes; the chain calls them in order.
	Start func(ctx context.Context, n int) (PeerChain, error)
}

// PeerChain is a peer's running plugin processes.
type PeerChain interface {
	// Call has plugin i (0-based) do StampJob on in and returns its output.
	Call(ctx context.Context, i int, in []byte) ([]byte, error)
	// Close stops the processes.
	Close()
}

// topologySteps are the chain lengths of the topology case.
var topologySteps = []int{1, 5}

// runTopology: the real topology. The broker runs as in every other case
// (embedded server, in-process connection); each plugin is a separate
// process (this binary as an SDK plugin built with sdk.Main) started by
// hostd's supervisor the way hostd starts it, with its own credentials,
// over loopback TCP: a 1-step and a 5-step job.pre_deploy chain of
// distinct processes doing StampJob, and a machines action. Raw: bare
// nats.go responder processes doing the same work, called in sequence by a
// client where the broker sits. With Config.Peers, every repetition also
// runs each peer (go-plugin) on the same work.
func runTopology(ctx context.Context, r *runner) error {
	bus, err := StartBus(ctx)
	if err != nil {
		return err
	}
	defer bus.Close()
	self := r.cfg.Self
	if self == "" {
		return fmt.Errorf("no binary to run plugin processes with (Config.Self)")
	}
	client, err := bus.Connect(InProcess, "topology-client")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "busbench-topology-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ps := &procSet{cancel: cancel}
	defer ps.stop()
	r.setup["topology"] = "plugins: separate processes (this binary built with sdk.Main) started by hostd's supervisor with `listen`, $NATS_URL, $PLUGBUS_PREFIX and the plugin's own $NATS_CREDS, over loopback TCP; broker embedded in busbench; raw: bare nats.go responder processes doing the same decode-stamp-encode, called in sequence from an in-process connection"

	maxSteps := topologySteps[len(topologySteps)-1]
	startHook := func(i int) error {
		name := fmt.Sprintf("topo-hook-%02d", i)
		env, err := pluginEnv(ctx, client, bus, dir, name)
		if err != nil {
			return err
		}
		return ps.start(pctx, self, name, "0", append(env, fmt.Sprintf("%s=hook:%s:%d", EnvChildPlugin, name, i)))
	}
	// The raw responders and the action plugin first.
	rawSubjects := make([]string, maxSteps)
	var rawEnv []string
	rawEnv = append(rawEnv, wire.EnvNATSURL+"="+bus.URL)
	if !bus.ownSrv {
		rawEnv = append(rawEnv, wire.EnvNATSCreds+"="+brokerCreds(bus.dir))
	}
	for i := range rawSubjects {
		rawSubjects[i] = fmt.Sprintf("bench.raw.topo.%02d", i)
		if err := ps.start(pctx, self, fmt.Sprintf("raw-%02d", i), "0", append(append([]string(nil), rawEnv...), EnvChildRaw+"="+rawSubjects[i])); err != nil {
			return err
		}
	}
	actName := "topo-action"
	actEnv, err := pluginEnv(ctx, client, bus, dir, actName)
	if err != nil {
		return err
	}
	if err := ps.start(pctx, self, actName, "0", append(actEnv, EnvChildPlugin+"=action:"+actName)); err != nil {
		return err
	}
	input := StampInput("v0")
	inBytes := mustJSON(input)
	if err := waitResponders(ctx, client, rawSubjects, inBytes, 60*time.Second); err != nil {
		return err
	}
	if err := waitActive(ctx, client, bus.Prefix, []string{actName}, 60*time.Second); err != nil {
		return err
	}
	n := r.pick(200, 1000)

	// The action.
	actBody := mustJSON(schemas.MachineActionRequest{Machine: "m1", Command: "noop"})
	actSubject := wire.APISubject(bus.Prefix, schemas.APIMachinesAction)
	ap50 := r.metric("process machines.action p50", "µs", false, nil)
	ap99 := r.metric("process machines.action p99", "µs", false, nil)
	ap50.Note = "bus: client -> broker -> action plugin process -> broker -> client; raw: 1 request/reply to a responder process doing StampJob"
	for run := 0; run < r.cfg.Runs; run++ {
		if r.raw() {
			l, err := rawRoundTrips(client, rawSubjects[:1], inBytes, 1, n)
			if err != nil {
				return err
			}
			ap50.AddRaw(us(l.Percentile(50)))
			ap99.AddRaw(us(l.Percentile(99)))
		}
		if r.bus() {
			l := NewLatencies(n)
			for i := 0; i < n+rrWarmup; i++ {
				start := time.Now()
				msg, err := client.Request(actSubject, actBody, 10*time.Second)
				if err != nil {
					return fmt.Errorf("machines.action: %w", err)
				}
				if msg.Header.Get(schemas.HeaderErrorCode) != "" {
					return fmt.Errorf("machines.action: %s", msg.Data)
				}
				if i >= rrWarmup {
					l.Add(time.Since(start))
				}
			}
			ap50.AddBus(us(l.Percentile(50)))
			ap99.AddBus(us(l.Percentile(99)))
		}
	}
	r.logf("%s: raw %s bus %s µs", ap50.Name, fmtNum(median(ap50.raw)), fmtNum(median(ap50.bus)))

	// The peers' processes, started once for the longest chain.
	type runningPeer struct {
		Peer
		chain PeerChain
	}
	var peers []runningPeer
	defer func() {
		for _, p := range peers {
			p.chain.Close()
		}
	}()
	for _, p := range r.cfg.Peers {
		c, err := p.Start(pctx, maxSteps)
		if err != nil {
			r.skip("peer %s: %v", p.Name, err)
			continue
		}
		peers = append(peers, runningPeer{p, c})
		r.setup["peer "+p.Name] = p.Setup
	}

	registered := 0
	version := 0
	deploySubject := wire.APISubject(bus.Prefix, schemas.APIJobsDeploy)
	for _, steps := range topologySteps {
		var names []string
		for ; registered < steps; registered++ {
			if err := startHook(registered); err != nil {
				return err
			}
			names = append(names, fmt.Sprintf("topo-hook-%02d", registered))
		}
		if err := waitActive(ctx, client, bus.Prefix, names, 60*time.Second); err != nil {
			return err
		}
		if err := waitChain(ctx, client, bus.Prefix, steps); err != nil {
			return err
		}
		label := "hook step"
		if steps > 1 {
			label = fmt.Sprintf("%d-step chain", steps)
		}
		cp50 := r.metric(fmt.Sprintf("process %s p50", label), "µs", false, nil)
		cp99 := r.metric(fmt.Sprintf("process %s p99", label), "µs", false, nil)
		cp50.Note = fmt.Sprintf("bus: the chain's duration as the broker records it (%d plugin process(es), StampJob each); raw: %d sequential request/replies to responder processes doing StampJob", steps, steps)
		added := r.metric(fmt.Sprintf("process %s: added per step p50", label), "µs", false, nil)
		added.Note = "(bus chain p50 - raw p50) / steps"
		dp50 := r.metric(fmt.Sprintf("process jobs.deploy p50, %s", label), "µs", false, nil)
		dp99 := r.metric(fmt.Sprintf("process jobs.deploy p99, %s", label), "µs", false, nil)
		dp50.Note = "bus only: client -> broker -> chain of plugin processes -> KV write -> deployed event -> client"
		var pm []*Metric
		for _, p := range peers {
			m50 := r.metricIn("peers", fmt.Sprintf("%s p50: plugbus vs %s", label, p.Name), "µs", false, &Target{Kind: "ratio_max", Value: 1})
			m99 := r.metricIn("peers", fmt.Sprintf("%s p99: plugbus vs %s", label, p.Name), "µs", false, &Target{Kind: "ratio_max", Value: 1})
			m50.Note = fmt.Sprintf("raw column: %s host calling %d plugin process(es) in sequence, StampJob each; plugbus: the broker's chain duration (same work)", p.Name, steps)
			pm = append(pm, m50, m99)
		}
		for run := 0; run < r.cfg.Runs; run++ {
			var rawP50 float64
			if r.raw() {
				l := NewLatencies(n)
				for i := 0; i < n+rrWarmup; i++ {
					start := time.Now()
					b := inBytes
					for s := 0; s < steps; s++ {
						msg, err := client.Request(rawSubjects[s], b, 10*time.Second)
						if err != nil {
							return fmt.Errorf("raw request: %w", err)
						}
						b = msg.Data
					}
					if i >= rrWarmup {
						l.Add(time.Since(start))
					}
				}
				rawP50 = us(l.Percentile(50))
				cp50.AddRaw(rawP50)
				cp99.AddRaw(us(l.Percentile(99)))
			}
			if r.bus() {
				rt := NewLatencies(n)
				ch := NewLatencies(n)
				for i := 0; i < n+rrWarmup; i++ {
					version++
					body := mustJSON(StampInput(fmt.Sprintf("v%d", version%1000)))
					start := time.Now()
					msg, err := client.Request(deploySubject, body, 30*time.Second)
					if err != nil {
						return fmt.Errorf("jobs.deploy: %w", err)
					}
					took := time.Since(start)
					if msg.Header.Get(schemas.HeaderErrorCode) != "" {
						return fmt.Errorf("jobs.deploy: %s", msg.Data)
					}
					var resp schemas.JobResponse
					if err := json.Unmarshal(msg.Data, &resp); err != nil {
						return err
					}
					if want := fmt.Sprintf("%02d", steps-1); resp.Job.Labels["stamp"] != want {
						return fmt.Errorf("jobs.deploy: stamp %q after %d steps, want %q", resp.Job.Labels["stamp"], steps, want)
					}
					if i < rrWarmup {
						continue
					}
					rt.Add(took)
					for _, c := range resp.Chains {
						if c.Hook == schemas.HookJobPreDeploy {
							ch.Add(time.Duration(c.DurationMs * float64(time.Millisecond)))
						}
					}
				}
				dp50.AddBus(us(rt.Percentile(50)))
				dp99.AddBus(us(rt.Percentile(99)))
				busP50 := us(ch.Percentile(50))
				cp50.AddBus(busP50)
				cp99.AddBus(us(ch.Percentile(99)))
				if r.raw() {
					added.AddBus((busP50 - rawP50) / float64(steps))
				}
				for k := range peers {
					pm[2*k].AddBus(busP50)
					pm[2*k+1].AddBus(us(ch.Percentile(99)))
				}
			}
			for k, p := range peers {
				l := NewLatencies(n)
				for i := 0; i < n+rrWarmup; i++ {
					start := time.Now()
					b := inBytes
					for s := 0; s < steps; s++ {
						out, err := p.chain.Call(ctx, s, b)
						if err != nil {
							return fmt.Errorf("peer %s: %w", p.Name, err)
						}
						b = out
					}
					if i >= rrWarmup {
						l.Add(time.Since(start))
					}
				}
				pm[2*k].AddRaw(us(l.Percentile(50)))
				pm[2*k+1].AddRaw(us(l.Percentile(99)))
			}
		}
		r.logf("%s: raw %s bus %s µs (p99 raw %s bus %s)", cp50.Name, fmtNum(median(cp50.raw)), fmtNum(median(cp50.bus)), fmtNum(median(cp99.raw)), fmtNum(median(cp99.bus)))
		for k, p := range peers {
			r.logf("  %s: p50 %s µs, p99 %s µs", p.Name, fmtNum(median(pm[2*k].raw)), fmtNum(median(pm[2*k+1].raw)))
		}
	}
	return nil
}

// waitChain waits until hooks.list shows a job.pre_deploy chain of steps
// steps.
func waitChain(ctx context.Context, nc *nats.Conn, prefix string, steps int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hl schemas.HookListResponse
		if err := call(ctx, nc, prefix, schemas.APIHooksList, schemas.HookListRequest{Hook: schemas.HookJobPreDeploy}, &hl); err != nil {
			return fmt.Errorf("hooks.list: %w", err)
		}
		if len(hl.Chains) == 1 && len(hl.Chains[0].Steps) == steps {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hooks.list: want a %d-step job.pre_deploy chain, got %+v", steps, hl.Chains)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
