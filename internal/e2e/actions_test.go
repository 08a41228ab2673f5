package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// TestLongActionSurvivesBrokerKill is issue 14's long action with real
// processes: the incrementer's firmware-update is running when the
// broker (and its embedded NATS) is killed with SIGKILL; the plugin
// finishes meanwhile and keeps its completion report; a new broker on the
// same data dir records it, once.
func TestLongActionSurvivesBrokerKill(t *testing.T) {
	bin := build(t)
	b := &bus{bin: bin, httpAddr: freeAddr(t), dataDir: t.TempDir()}
	listen := freeAddr(t)
	b.natsURL = "nats://" + listen
	startBroker := func() *proc {
		p := start(t, filepath.Join(bin, "broker"), "--data-dir", b.dataDir, "--listen", listen,
			"--http", b.httpAddr, "--log-format", "json", "--heartbeat-interval", "1s")
		waitFor(t, "broker /healthz", func() bool {
			resp, err := http.Get("http://" + b.httpAddr + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		return p
	}
	broker := startBroker()
	inc := start(t, filepath.Join(bin, "plugins", "incrementer"), "listen", "--server", b.natsURL, "--log-format", "json",
		"--creds", b.pluginCreds(t, "incrementer"))
	b.waitActive(t, "incrementer")

	id := strings.TrimSpace(b.mustBusctl(t, "machine", "action", "m1", "firmware-update", "--param", "duration=2s", "--no-wait"))
	get := func() (schemas.ActionRecord, bool) {
		out, _, code := b.busctl(t, "actions", "get", id, "-o", "json")
		var rec schemas.ActionRecord
		return rec, code == 0 && json.Unmarshal([]byte(out), &rec) == nil
	}
	waitFor(t, "the action's first progress report", func() bool {
		rec, ok := get()
		return ok && rec.Status == schemas.ActionRunning && rec.Progress != nil
	})

	if err := broker.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-broker.done
	// The handler ends while no broker runs: the plugin says it keeps
	// trying to report the completion.
	waitFor(t, "the plugin retrying its completion report", func() bool {
		return strings.Contains(inc.out.String(), "cannot report the action's completion yet")
	})

	broker = startBroker()
	waitFor(t, "the action recorded succeeded", func() bool {
		rec, ok := get()
		return ok && rec.Status == schemas.ActionSucceeded
	})
	rec, _ := get()
	var res struct {
		Firmware string `json:"firmware"`
	}
	if err := json.Unmarshal(rec.Result, &res); err != nil || res.Firmware != "2.1.0" {
		t.Fatalf("result %s (%v)", rec.Result, err)
	}
	out := b.mustBusctl(t, "events", "tail", "--type", schemas.TypeMachineActionCompleted, "-n", "20", "-o", "json")
	completed := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Data schemas.MachineActionCompletedData `json:"data"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Data.ActionID == id {
			completed++
		}
	}
	if completed != 1 {
		t.Fatalf("%d action_completed events for %s, want 1:\n%s", completed, id, out)
	}
	for _, p := range []*proc{inc, broker} {
		if err := p.stop(t); err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0", p.name, err)
		}
	}
}
