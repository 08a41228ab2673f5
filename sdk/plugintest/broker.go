package plugintest

import (
	"context"
	"testing"
	"time"

	"github.com/plugbus/plugbus/broker"
)

// startBroker starts a broker with the bus's config and waits until it is
// ready; the test's cleanup stops it if it still runs.
func (b *Bus) startBroker(t testing.TB) {
	t.Helper()
	br, err := broker.New(b.bcfg)
	if err != nil {
		t.Fatalf("plugintest: broker config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	stopped := false
	stop := func(t testing.TB) {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("plugintest: broker: %v", err)
			}
		case <-time.After(StartTimeout):
			t.Errorf("plugintest: broker did not stop within %s", StartTimeout)
		}
	}
	t.Cleanup(func() { stop(t) })
	select {
	case <-br.Ready():
	case err := <-done:
		t.Fatalf("plugintest: broker stopped before it was ready: %v", err)
	case <-time.After(StartTimeout):
		t.Fatalf("plugintest: broker not ready within %s", StartTimeout)
	}
	b.mu.Lock()
	b.broker, b.stopBroker = br, stop
	b.mu.Unlock()
}

// StopBroker stops the bus's broker (the nats-server and the plugins keep
// running), as a broker crash or upgrade would; StartBroker starts a new
// one on the same bus. While no broker runs, API calls get no responders.
func (b *Bus) StopBroker(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	stop := b.stopBroker
	b.stopBroker = nil
	b.mu.Unlock()
	if stop == nil {
		t.Fatal("plugintest: StopBroker: no broker runs")
	}
	stop(t)
}

// StartBroker starts a new broker on the bus after StopBroker, with the
// same config, and waits until it is ready.
func (b *Bus) StartBroker(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	running := b.stopBroker != nil
	b.mu.Unlock()
	if running {
		t.Fatal("plugintest: StartBroker: a broker runs already (StopBroker first)")
	}
	b.startBroker(t)
}
