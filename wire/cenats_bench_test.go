package wire_test

import (
	"context"
	"testing"

	"github.com/plugbus/plugbus/wire"
)

func BenchmarkEncodeEvent(b *testing.B) {
	e := sample(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.EncodeEvent(ctx, "plugbus.evt.job.v1.deployed", e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	ctx := context.Background()
	msg, err := wire.EncodeEvent(ctx, "s", sample(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.DecodeEvent(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}
