package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/client"
)

// median of ds (sorted in place).
func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// unrelated sends n jobs.deploy (of jobs no hook concerns) and n
// plugins.list, one after another, and returns the median latency of each.
func unrelated(t *testing.T, c *client.Client, n int, tag string) (deploy, list time.Duration) {
	t.Helper()
	ds, ls := unrelatedSamples(t, c, n, tag)
	return median(ds), median(ls)
}

// sampleGap spaces the latency samples, so that each median is taken
// over a second or two rather than a few hundred milliseconds: a short
// burst of CPU from another process on the machine (make test runs the
// suite beside the race run) then moves it no more than the hang does.
const sampleGap = 15 * time.Millisecond

// unrelatedSamples times n hook-free jobs.deploy and n plugins.list calls,
// sampleGap apart.
func unrelatedSamples(t *testing.T, c *client.Client, n int, tag string) (deploy, list []time.Duration) {
	t.Helper()
	var ds, ls []time.Duration
	for i := range n {
		if i > 0 {
			time.Sleep(sampleGap)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		_, err := c.DeployJob(ctx, schemas.JobDeployRequest{Name: fmt.Sprintf("%s-%03d", tag, i), Version: "1", Image: "nginx"})
		ds = append(ds, time.Since(t0))
		if err != nil {
			cancel()
			t.Fatalf("jobs.deploy %s-%03d: %v", tag, i, err)
		}
		t0 = time.Now()
		_, err = c.ListPlugins(ctx, "")
		ls = append(ls, time.Since(t0))
		cancel()
		if err != nil {
			t.Fatalf("plugins.list: %v", err)
		}
	}
	return ds, ls
}

// Scenario 3: an alert.pre_notify gate that hangs (answers after a
// minute, its step times out after 3s), under 300 concurrent alerts,
// with each failure policy. The alerts stuck on it hold only their own
// slots: deploys of hook-free jobs and plugins.list keep their idle median
// latency (within 2x, both measured in the same run, the idle one before
// and after the hang), and the alerts end
// as the policy says — refused with nothing stored (fail), or fired
// without the step (ignore).
func TestHungHook(t *testing.T) {
	heavy(t)
	for _, policy := range []string{"fail", "ignore"} {
		t.Run(policy, func(t *testing.T) { hungHook(t, policy) })
	}
}

func hungHook(t *testing.T, policy string) {
	start := time.Now()
	const pluginSlots = 32 // --plugin-concurrency, the bound a hung plugin can take
	b := newBus(t, "--plugin-concurrency", fmt.Sprint(pluginSlots), "--hook-concurrency", "64", "--max-concurrent-objects", "64")
	name := "hung-" + policy
	hl := newLines()
	b.startPlugin(t, name, "hookplugin",
		[]string{"HOOKPLUGIN_NAME=" + name, "HOOKPLUGIN_POLICY=" + policy, "HOOKPLUGIN_TIMEOUT=3s", "HOOKPLUGIN_DELAY=1m"}, hl.add)
	c := b.admin(t)

	unrelated(t, c, 20, "warm")
	// The idle figure brackets the hang: half its samples before, half
	// after, so a drift in the machine's own load does not count as the
	// hang's doing.
	idleDs, idleLs := unrelatedSamples(t, c, 50, "idle")

	const n = 300
	h := newHistory()
	done := make(chan struct{})
	go func() {
		h.run(context.Background(), load{c: c, n: n, workers: n, prefix: "hung-" + policy, timeout: time.Minute, once: true})
		close(done)
	}()
	answered := func() int {
		k := 0
		for _, o := range h.snapshot() {
			if o.Answered {
				k++
			}
		}
		return k
	}
	// Hung: every request is out and every handler of the plugin is stuck.
	waitFor(t, "all 300 alerts sent and the plugin's handlers all stuck", waitLimit, func() bool {
		return int(h.offered.Load()) == n && hl.count("HELD") >= sdk.DefaultHookConcurrency
	})
	held := hl.count("HELD")
	busyDeploy, busyList := unrelated(t, c, 100, "busy")
	stillStuck := n - answered()
	if stillStuck == 0 || hl.count("ANSWERED") > 0 {
		t.Fatalf("the hung hook let go before the measurement ended (%d alerts still waiting, %d answered by the plugin): it does not measure anything", stillStuck, hl.count("ANSWERED"))
	}
	<-done
	ds, ls := unrelatedSamples(t, c, 50, "after")
	idleDeploy, idleList := median(append(idleDs, ds...)), median(append(idleLs, ls...))

	codes := map[string]int{}
	for _, o := range h.snapshot() {
		if o.OK {
			codes["ok"]++
		} else {
			codes[o.Code]++
		}
	}
	var parts []string
	for c, k := range codes {
		parts = append(parts, fmt.Sprintf("%d %s", k, c))
	}
	sort.Strings(parts)
	v := check(h, storedAlerts(t, b.jetstream(t), "io.plugbus.alert.v1.fired"), nil)
	v.Scenario = "hung-hook-" + policy
	ratio := func(busy, idle time.Duration) float64 { return float64(busy) / float64(idle) }
	v.Notes = fmt.Sprintf("300 concurrent alerts, step timeout 3s, the plugin's %d handlers stuck, %d alerts unanswered when the measurement ended; answers: %s; median jobs.deploy idle %.2f ms, meanwhile %.2f ms (x%.2f); plugins.list idle %.2f ms, meanwhile %.2f ms (x%.2f)",
		held, stillStuck, strings.Join(parts, ", "),
		ms(idleDeploy), ms(busyDeploy), ratio(busyDeploy, idleDeploy), ms(idleList), ms(busyList), ratio(busyList, idleList))
	v.Seconds = time.Since(start).Seconds()
	record(t, v.Row)
	v.require(t)
	for what, r := range map[string]float64{"jobs.deploy": ratio(busyDeploy, idleDeploy), "plugins.list": ratio(busyList, idleList)} {
		if r > 2 {
			t.Errorf("the median latency of %s went up %.2fx while the hook hung (want at most 2x)", what, r)
		}
	}
	switch policy {
	case "fail":
		if *v.Acknowledged != 0 || *v.Stored != 0 {
			t.Errorf("policy fail: %d alerts acknowledged, %d stored; want every alert refused and none stored", *v.Acknowledged, *v.Stored)
		}
	case "ignore":
		if *v.Acknowledged != n || *v.Stored != n {
			t.Errorf("policy ignore: %d alerts acknowledged, %d stored; want every alert fired", *v.Acknowledged, *v.Stored)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
