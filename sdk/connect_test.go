package sdk_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugbus/plugbus/sdk"
)

func TestConnect(t *testing.T) {
	s := startServer(t)
	missingCreds := filepath.Join(t.TempDir(), "nope.creds")
	tests := []struct {
		name    string
		cfg     sdk.ConnectConfig
		timeout time.Duration
		wantErr func(error) bool
	}{
		{name: "server up", cfg: sdk.ConnectConfig{URL: s.ClientURL(), Name: "t"}, timeout: 5 * time.Second},
		{name: "nobody listens: retried until ctx ends", cfg: sdk.ConnectConfig{URL: "nats://127.0.0.1:1"}, timeout: 300 * time.Millisecond,
			wantErr: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "missing creds file: at once", cfg: sdk.ConnectConfig{URL: s.ClientURL(), Creds: missingCreds}, timeout: time.Minute,
			wantErr: func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			nc, err := sdk.Connect(ctx, tt.cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				nc.Close()
				return
			}
			if err == nil || !tt.wantErr(err) {
				t.Fatalf("error = %v", err)
			}
			if ctx.Err() != nil && tt.timeout == time.Minute {
				t.Error("a permanent error was retried until the deadline")
			}
		})
	}
}

func TestConnectURLDefault(t *testing.T) {
	t.Setenv("NATS_URL", "nats://example:4222")
	if got := (sdk.ConnectConfig{}).URLOrDefault(); got != "nats://example:4222" {
		t.Errorf("got %q", got)
	}
	if got := (sdk.ConnectConfig{URL: "nats://x:1"}).URLOrDefault(); got != "nats://x:1" {
		t.Errorf("got %q", got)
	}
	t.Setenv("NATS_URL", "")
	if got := (sdk.ConnectConfig{}).URLOrDefault(); got != "nats://127.0.0.1:4222" {
		t.Errorf("got %q", got)
	}
}
