package broker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// alertmanagerConfig is the shipped Alertmanager config.
const alertmanagerConfig = "../deployments/alertmanager/alertmanager.yml"

// lockedBuffer collects a child process's output for the failure message.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(testnats.FreePort(t))
}

// TestAlertmanagerToIntake runs a real Alertmanager with the shipped
// config (its URL pointed at a test broker, with the broker's token, and
// short group timings), pushes an alert to Alertmanager's API, and waits
// for the fired and then the resolved alert event in the stream.
func TestAlertmanagerToIntake(t *testing.T) {
	// Debian's name, else upstream's.
	am, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		am = requireTool(t, "alertmanager")
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "plugbus-alerts-token")
	if err := os.WriteFile(tokenFile, []byte("am-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tb := startBroker(t, Config{DataDir: filepath.Join(dir, "broker"), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AlertsTokenFile: tokenFile})

	events := make(chan *nats.Msg, 64)
	sub, err := tb.nc.ChanSubscribe(wire.EventSubject("plugbus", "io.plugbus.alert.v1.*"), events)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := tb.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(alertmanagerConfig)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", alertmanagerConfig, err)
	}
	route := cfg["route"].(map[string]any)
	route["group_wait"], route["group_interval"] = "100ms", "500ms"
	hook := cfg["receivers"].([]any)[0].(map[string]any)["webhook_configs"].([]any)[0].(map[string]any)
	if hook["url"] != "http://127.0.0.1:8080"+IntakePath || hook["send_resolved"] != true {
		t.Fatalf("the shipped config does not send firing and resolved alerts to make run's broker: %v", hook)
	}
	hook["url"] = "http://" + tb.b.HTTPAddr() + IntakePath
	hook["http_config"] = map[string]any{"authorization": map[string]any{"type": "Bearer", "credentials_file": tokenFile}}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgFile, out, 0o600); err != nil {
		t.Fatal(err)
	}

	amAddr := "127.0.0.1:" + freePort(t)
	var logs lockedBuffer
	cmd := exec.Command(am, "--config.file="+cfgFile, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=", "--log.level=debug")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	defer func() {
		if t.Failed() {
			t.Logf("alertmanager's log:\n%s", logs.String())
		}
	}()
	waitFor(t, "alertmanager ready", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("alertmanager exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get("http://" + amAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	labels := map[string]string{"alertname": "PlugbusIntakeTest", "severity": "critical", "instance": "m1"}
	id := alertmanagerIDPrefix + model.LabelSet(toLabelSet(labels)).Fingerprint().String()
	startsAt := time.Now().UTC().Add(-time.Minute)
	push := func(endsAt time.Time) {
		t.Helper()
		body, _ := json.Marshal([]map[string]any{{
			"labels": labels, "annotations": map[string]string{"summary": "intake test on m1"},
			"startsAt": startsAt, "endsAt": endsAt,
		}})
		resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("alertmanager /api/v2/alerts: %d", resp.StatusCode)
		}
	}
	wait := func(eventType string) schemas.Alert {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case m := <-events:
				if m.Header.Get("ce-type") != eventType || m.Header.Get("ce-subject") != "alert/"+id {
					continue
				}
				var a schemas.Alert
				if err := json.Unmarshal(m.Data, &a); err != nil {
					t.Fatal(err)
				}
				return a
			case <-timeout:
				t.Fatalf("no %s event for %s within 60s", eventType, id)
			}
		}
	}

	push(time.Now().UTC().Add(time.Hour))
	fired := wait(schemas.TypeAlertFired)
	if fired.Severity != "critical" || fired.Summary != "intake test on m1" || fired.Labels["instance"] != "m1" {
		t.Fatalf("fired alert: %+v", fired)
	}
	push(time.Now().UTC().Add(-time.Second))
	if resolved := wait(schemas.TypeAlertResolved); resolved.Status != schemas.AlertResolved {
		t.Fatalf("resolved alert: %+v", resolved)
	}
	// However often Alertmanager sent the group meanwhile, the alert
	// fired once and resolved once.
	if n := len(eventsOf(t, tb, schemas.TypeAlertFired, "alert/"+id)); n != 1 {
		t.Errorf("%d fired events, want 1", n)
	}
	if n := len(eventsOf(t, tb, schemas.TypeAlertResolved, "alert/"+id)); n != 1 {
		t.Errorf("%d resolved events, want 1", n)
	}
	mfs := scrape(t, tb.b.HTTPAddr())
	if v := mustSample(t, mfs, "plugbus_alert_intake_requests_total", map[string]string{"format": "alertmanager", "code": "ok"}); v < 2 {
		t.Errorf("intake requests from alertmanager: %v, want at least 2", v)
	}
}
