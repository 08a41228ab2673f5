package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/wire"
)

// rrWarmup requests at the start of each request/reply run are not counted.
const rrWarmup = 50

// rawResponder answers every request on subject with body, on its own
// in-process connection.
func rawResponder(bus *Bus, subject string, body []byte) error {
	nc, err := bus.Connect(InProcess, "raw-responder")
	if err != nil {
		return err
	}
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(body) }); err != nil {
		return err
	}
	return nc.Flush()
}

// rawRoundTrips times n sequences of `steps` sequential requests (body to
// subjects[i % len]) and returns their durations.
func rawRoundTrips(nc *nats.Conn, subjects []string, body []byte, steps, n int) (*Latencies, error) {
	l := NewLatencies(n)
	for i := 0; i < n+rrWarmup; i++ {
		start := time.Now()
		for s := 0; s < steps; s++ {
			if _, err := nc.Request(subjects[s%len(subjects)], body, 10*time.Second); err != nil {
				return nil, fmt.Errorf("raw request: %w", err)
			}
		}
		if i >= rrWarmup {
			l.Add(time.Since(start))
		}
	}
	return l, nil
}

// runRR: a raw request round trip vs a machine action through the broker
// API to an SDK plugin and back; then hook chains of 1, 5 and 20 steps run
// by jobs.deploy vs as many raw round trips. Everything on in-process
// connections.
func runRR(ctx context.Context, r *runner) error {
	bus, err := StartBus(ctx)
	if err != nil {
		return err
	}
	defer func() { bus.Close() }()
	n := r.pick(300, 2000)
	client, err := bus.Connect(InProcess, "rr-client")
	if err != nil {
		return err
	}

	// Machine action vs one raw round trip.
	p, err := sdk.New(schemas.Manifest{Name: "rr-action", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "noop", Model: "machines"}}},
		sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
	if err != nil {
		return err
	}
	p.HandleAction("noop", func(context.Context, *sdk.Action) (any, error) { return map[string]bool{"ok": true}, nil })
	if _, err := bus.StartPlugin(p, InProcess); err != nil {
		return err
	}
	actReq := schemas.MachineActionRequest{Machine: "m1", Command: "noop"}
	var actResp schemas.MachineActionResponse
	if err := call(ctx, client, bus.Prefix, schemas.APIMachinesAction, actReq, &actResp); err != nil {
		return fmt.Errorf("machines.action: %w", err)
	}
	if err := rawResponder(bus, "bench.raw.echo", mustJSON(actResp)); err != nil {
		return err
	}
	actSubject := wire.APISubject(bus.Prefix, schemas.APIMachinesAction)
	actBody := mustJSON(actReq)
	ap50 := r.metric("machines.action round trip p50", "µs", false, nil)
	ap99 := r.metric("machines.action round trip p99", "µs", false, nil)
	ap50.Note = "raw: 1 request/reply to a responder; bus: client -> broker API -> SDK plugin action -> broker -> client (plus action_requested/completed events)"
	for run := 0; run < r.cfg.Runs; run++ {
		if r.raw() {
			l, err := rawRoundTrips(client, []string{"bench.raw.echo"}, actBody, 1, n)
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

	for i, mode := range hookModes {
		if i > 0 {
			// A fresh bus: the plugins of the previous mode are in its chains.
			bus.Close()
			if bus, err = StartBus(ctx); err != nil {
				return err
			}
			if client, err = bus.Connect(InProcess, "rr-client"); err != nil {
				return err
			}
		}
		r.setup["hook_plugins"+mode.suffix] = mode.desc
		if err := runHookChains(ctx, r, bus, client, mode); err != nil {
			return fmt.Errorf("hook chains%s: %w", mode.suffix, err)
		}
	}
	return nil
}

// hookLevels are the chain lengths measured.
var hookLevels = []int{0, 1, 5, 20}

// runHookChains measures jobs.deploy with job.pre_deploy chains of growing
// length against the same number of raw round trips.
func runHookChains(ctx context.Context, r *runner, bus *Bus, client *nats.Conn, mode hookMode) error {
	n := r.pick(200, 1000)
	maxSteps := hookLevels[len(hookLevels)-1]
	rawSubjects := make([]string, maxSteps)
	for i := range rawSubjects {
		rawSubjects[i] = fmt.Sprintf("bench.raw.hook.%d", i)
		if err := rawResponder(bus, rawSubjects[i], continueReply); err != nil {
			return err
		}
	}
	deploy := schemas.JobDeployRequest{Name: "bench", Version: "0", Image: "registry.example.com/bench/app:1.0.0",
		Env: map[string]string{"LOG_LEVEL": "info"}, Labels: map[string]string{"team": "bench"}}
	hookBody := mustJSON(schemas.HookRequest{Hook: schemas.HookJobPreDeploy, ChainID: "0b8f1c1e-3f5e-4a8e-9f5e-0d3c9a1f2b11",
		Object: "job/bench", Payload: mustJSON(deploy)})
	registered := 0
	version := 0
	deploySubject := wire.APISubject(bus.Prefix, schemas.APIJobsDeploy)
	for _, steps := range hookLevels {
		for ; registered < steps; registered++ {
			if err := mode.start(bus, hookManifest(registered)); err != nil {
				return err
			}
		}
		var hl schemas.HookListResponse
		if err := call(ctx, client, bus.Prefix, schemas.APIHooksList, schemas.HookListRequest{Hook: schemas.HookJobPreDeploy}, &hl); err != nil {
			return fmt.Errorf("hooks.list: %w", err)
		}
		if len(hl.Chains) != 1 || len(hl.Chains[0].Steps) != steps {
			return fmt.Errorf("hooks.list: want a %d-step job.pre_deploy chain, got %+v", steps, hl.Chains)
		}
		dep := r.metric(fmt.Sprintf("jobs.deploy p50, %d-step pre_deploy chain%s", steps, mode.suffix), "µs", false, nil)
		dep.Note = "bus only: client -> broker -> chain -> KV write -> deployed event -> client"
		var chain, perStep *Metric
		if steps > 0 {
			chain = r.metric(fmt.Sprintf("hook chain %d steps p50%s", steps, mode.suffix), "µs", false, nil)
			chain.Note = fmt.Sprintf("raw: %d sequential request/replies; bus: the chain's duration_ms as the broker records it", steps)
			perStep = r.metric(fmt.Sprintf("hook chain %d steps: added per step p50%s", steps, mode.suffix), "µs", false, &Target{Kind: "bus_max", Value: mode.target})
			perStep.Note = "(bus chain p50 - raw p50) / steps"
		}
		for run := 0; run < r.cfg.Runs; run++ {
			var rawP50 float64
			if r.raw() && steps > 0 {
				l, err := rawRoundTrips(client, rawSubjects, hookBody, steps, n)
				if err != nil {
					return err
				}
				rawP50 = us(l.Percentile(50))
				chain.AddRaw(rawP50)
			}
			if !r.bus() {
				continue
			}
			rt := NewLatencies(n)
			ch := NewLatencies(n)
			for i := 0; i < n+rrWarmup; i++ {
				version++
				deploy.Version = fmt.Sprintf("v%d", version)
				body := mustJSON(deploy)
				start := time.Now()
				msg, err := client.Request(deploySubject, body, 30*time.Second)
				if err != nil {
					return fmt.Errorf("jobs.deploy: %w", err)
				}
				took := time.Since(start)
				if msg.Header.Get(schemas.HeaderErrorCode) != "" {
					return fmt.Errorf("jobs.deploy: %s", msg.Data)
				}
				if i < rrWarmup {
					continue
				}
				rt.Add(took)
				if steps > 0 {
					var resp schemas.JobResponse
					if err := json.Unmarshal(msg.Data, &resp); err != nil {
						return err
					}
					for _, c := range resp.Chains {
						if c.Hook == schemas.HookJobPreDeploy {
							ch.Add(time.Duration(c.DurationMs * float64(time.Millisecond)))
						}
					}
				}
			}
			dep.AddBus(us(rt.Percentile(50)))
			if steps > 0 {
				if ch.Len() == 0 {
					return fmt.Errorf("jobs.deploy: no job.pre_deploy chain record in the replies")
				}
				busP50 := us(ch.Percentile(50))
				chain.AddBus(busP50)
				if r.raw() {
					perStep.AddBus((busP50 - rawP50) / float64(steps))
				}
			}
		}
		if chain != nil {
			r.logf("%s: raw %s bus %s µs; added per step %s µs", chain.Name, fmtNum(median(chain.raw)), fmtNum(median(chain.bus)), fmtNum(median(perStep.bus)))
		}
		r.logf("%s: %s µs", dep.Name, fmtNum(median(dep.bus)))
	}
	return nil
}
