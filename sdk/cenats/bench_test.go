package cenats_test

import (
	"context"
	"testing"

	"github.com/plugbus/plugbus/sdk/cenats"
)

func BenchmarkEncode(b *testing.B) {
	e := sample(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cenats.Encode(ctx, "plugbus.evt.job.v1.deployed", e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	ctx := context.Background()
	msg, err := cenats.Encode(ctx, "s", sample(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cenats.Decode(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}
