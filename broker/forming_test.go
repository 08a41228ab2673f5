package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// While the cluster is forming (no suitable peers, no meta leader) the
// streams and buckets are created again; any other error ends the start
// at once, and the context bounds the wait.
func TestWhileClusterForms(t *testing.T) {
	noPeers := fmt.Errorf("create bucket plugbus_hosts: %w", &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, peer offline"})
	notAvailable := &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
	log := zerolog.Nop()

	calls := 0
	err := whileClusterForms(context.Background(), log, func() error {
		calls++
		switch calls {
		case 1:
			return noPeers
		case 2:
			return notAvailable
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("forming cluster: err %v after %d calls, want nil after 3", err, calls)
	}

	calls = 0
	denied := errors.New("nats: permissions violation")
	err = whileClusterForms(context.Background(), log, func() error { calls++; return denied })
	if !errors.Is(err, denied) || calls != 1 {
		t.Fatalf("other error: err %v after %d calls, want it at once", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	calls = 0
	err = whileClusterForms(ctx, log, func() error { calls++; return noPeers })
	if err == nil || calls < 2 {
		t.Fatalf("a cluster that never forms: err %v after %d calls, want an error after retries", err, calls)
	}
}
