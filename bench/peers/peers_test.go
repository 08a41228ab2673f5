package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/plugbus/plugbus/internal/bench"
	"github.com/plugbus/plugbus/schemas"
)

// TestMain serves as a go-plugin plugin process when the host starts the
// test binary as one (go-plugin's own TestHelperProcess pattern).
func TestMain(m *testing.M) {
	if servePlugin() {
		return
	}
	os.Exit(m.Run())
}

// TestChainStamps runs a 2-process chain over each protocol and checks the
// document went through both plugins and kept its size.
func TestChainStamps(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(bench.StampInput("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != bench.StampInputSize {
		t.Fatalf("input is %d bytes, want %d", len(in), bench.StampInputSize)
	}
	for _, proto := range []string{"netrpc", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			c, err := peer(self, proto).Start(context.Background(), 2)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b := in
			for i := range 2 {
				if b, err = c.Call(context.Background(), i, b); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			var j schemas.JobDeployRequest
			if err := json.Unmarshal(b, &j); err != nil {
				t.Fatal(err)
			}
			if j.Labels["stamp"] != "01" || j.Version != "v1" {
				t.Fatalf("after the chain: %+v", j)
			}
			if len(b) != bench.StampInputSize+2 {
				t.Errorf("output is %d bytes, want %d", len(b), bench.StampInputSize+2)
			}
		})
	}
}
