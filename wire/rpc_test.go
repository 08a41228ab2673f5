package wire_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/internal/testnats"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

func startNATS(t *testing.T) *nats.Conn {
	return testnats.Connect(t, testnats.Start(t, false).ClientURL())
}

func TestCallRoundTripAndErrors(t *testing.T) {
	nc := startNATS(t)
	ctx := context.Background()
	type echo struct {
		Value string `json:"value"`
	}
	_, err := nc.Subscribe("ok", func(m *nats.Msg) {
		_ = nc.PublishMsg(wire.ReplyMsg(m.Reply, echo{Value: "pong"}, nil))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = nc.Subscribe("fail", func(m *nats.Msg) {
		// Details that cannot be encoded must not lose the error itself.
		e := &schemas.Error{Code: schemas.CodeNotFound, Field: "name", Message: "no such thing",
			Details: map[string]any{"bad": func() {}}}
		_ = nc.PublishMsg(wire.ReplyMsg(m.Reply, nil, e))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = nc.Subscribe("plain", func(m *nats.Msg) {
		_ = nc.PublishMsg(wire.ReplyMsg(m.Reply, nil, errors.New("boom")))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = nc.Subscribe("headeronly", func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(schemas.HeaderErrorCode, schemas.CodeTimeout)
		r.Header.Set(schemas.HeaderError, "slow")
		_ = nc.PublishMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = nc.Subscribe("hang", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var got echo
	if err := wire.Call(ctx, nc, "ok", echo{Value: "ping"}, &got); err != nil || got.Value != "pong" {
		t.Fatalf("ok: %+v %v", got, err)
	}
	err = wire.Call(ctx, nc, "fail", nil, nil)
	var e *schemas.Error
	if !errors.As(err, &e) || e.Code != schemas.CodeNotFound || e.Field != "name" || e.Message != "no such thing" {
		t.Fatalf("fail: %#v", err)
	}
	if !errors.Is(err, schemas.ErrNotFound) {
		t.Fatal("errors.Is by code does not match")
	}
	if err := wire.Call(ctx, nc, "plain", nil, nil); !errors.Is(err, schemas.ErrInternal) || !errorsContain(err, "boom") {
		t.Fatalf("plain error: %v", err)
	}
	if err := wire.Call(ctx, nc, "headeronly", nil, nil); !errors.Is(err, schemas.ErrTimeout) || !errorsContain(err, "slow") {
		t.Fatalf("header-only error: %v", err)
	}
	if err := wire.Call(ctx, nc, "nobody", nil, nil); !errors.Is(err, schemas.ErrNoResponders) {
		t.Fatalf("no responders: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := wire.Call(tctx, nc, "hang", nil, nil); !errors.Is(err, schemas.ErrTimeout) {
		t.Fatalf("timeout: %v", err)
	}
	if err := wire.Call(ctx, nc, "ok", func() {}, nil); err == nil {
		t.Fatal("an unencodable request must fail")
	}
}

func errorsContain(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
