package sdk_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/sdk"
)

// TestMainServesMetrics: listen --metrics-addr serves the plugin's metrics
// at /metrics while it runs; an address in use is an error at start.
func TestMainServesMetrics(t *testing.T) {
	s := startServer(t)
	newFakeBroker(t, s.ClientURL())
	addr := fmt.Sprintf("127.0.0.1:%d", testnats.FreePort(t))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	setup := func(p *sdk.Plugin) error {
		p.HandleAction("poke", func(context.Context, *sdk.Action) (any, error) { return "poked", nil })
		return nil
	}
	code := make(chan int, 1)
	go func() {
		code <- sdk.RunMain(ctx, []string{"listen", "-s", s.ClientURL(), "--metrics-addr", addr, "--log-format", "json"},
			&bytes.Buffer{}, &stderr, mainManifest, setup)
	}()
	var body string
	waitFor(t, "metrics served", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK && strings.Contains(body, `plugbus_sdk_handler_calls_total{kind="init",name="init",plugin="mainer",result="ok"} 1`)
	})
	if !strings.Contains(body, `plugin="mainer",version="0.1.0"} 1`) {
		t.Errorf("no build info:\n%s", body)
	}

	// The address is taken now: a second instance on it fails to start.
	var stderr2 bytes.Buffer
	if c := sdk.RunMain(context.Background(), []string{"listen", "-s", s.ClientURL(), "--metrics-addr", addr}, &bytes.Buffer{}, &stderr2, mainManifest, setup); c != sdk.ExitError ||
		!strings.Contains(stderr2.String(), "--metrics-addr "+addr) {
		t.Errorf("metrics address in use: exit %d, stderr %s", c, stderr2.String())
	}

	cancel()
	select {
	case c := <-code:
		if c != sdk.ExitOK {
			t.Errorf("exit code %d, stderr:\n%s", c, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("listen did not stop")
	}
}
