package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

func ExampleNew() {
	p, err := sdk.New(schemas.Manifest{
		Name:    "incrementer",
		Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "increment", Model: "machines"}},
	}, sdk.WithPrefix("dev"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Name(), p.Prefix(), sdk.ServiceName(p.Name()))

	_, err = sdk.New(schemas.Manifest{Name: "incrementer", Version: "one"})
	fmt.Println(errors.Is(err, sdk.ErrInvalidManifest), err)
	// Output:
	// incrementer dev plugbus-incrementer
	// true invalid manifest: version: "one" is not a semantic version such as 1.2.3
}

func ExamplePlugin_HandleAction() {
	p, _ := sdk.New(schemas.Manifest{Name: "calc", Version: "1.0.0"})
	add := func(_ context.Context, a *sdk.Action) (any, error) {
		x, err := a.Int("x", 0)
		if err != nil {
			return nil, err // invalid_field naming params.x
		}
		y, err := a.Int("y", 1)
		if err != nil {
			return nil, err
		}
		return map[string]int{"sum": x + y}, nil
	}
	p.HandleAction("add", add)

	// The SDK calls the handler with the request the broker routed.
	res, err := add(context.Background(), &sdk.Action{ActionRequest: schemas.ActionRequest{
		Command: "add", Params: map[string]any{"x": 41.0},
	}})
	fmt.Println(res, err)
	_, err = add(context.Background(), &sdk.Action{ActionRequest: schemas.ActionRequest{
		Command: "add", Params: map[string]any{"x": "many"},
	}})
	fmt.Println(err)
	// Output:
	// map[sum:42] <nil>
	// invalid_field: param "x": want an integer, got "many" (field params.x)
}

func ExamplePlugin_HandleEvent() {
	p, _ := sdk.New(schemas.Manifest{Name: "pager", Version: "1.0.0", Events: &schemas.EventSubscription{
		Types:   []string{"io.plugbus.alert.v1.*"},
		Backoff: []schemas.Duration{schemas.Duration(time.Second), schemas.Duration(5 * time.Second)},
	}})
	p.HandleEvent("io.plugbus.alert.v1.*", func(ctx context.Context, e event.Event) error {
		alert, err := sdk.DecodeData[schemas.Alert](e)
		if err != nil {
			return err // already Permanent: bad data is dead-lettered
		}
		if d, ok := sdk.DeliveryFromContext(ctx); ok && d.NumDelivered > 1 {
			fmt.Println("retrying", alert.ID)
		}
		return nil
	})
}

func ExamplePermanent() {
	errs := []error{
		sdk.Permanent(errors.New("webhook answered 400")),
		sdk.RetryAfter(30*time.Second, errors.New("webhook answered 429")),
		errors.New("connection refused"),
	}
	for _, err := range errs {
		d, retryAfter := sdk.RetryDelay(err)
		fmt.Printf("%-36q permanent=%v retry_after=%v %s\n", err.Error(), sdk.IsPermanent(err), retryAfter, d)
	}
	// Output:
	// "webhook answered 400"               permanent=true retry_after=false 0s
	// "retry after 30s: webhook answered 429" permanent=false retry_after=true 30s
	// "connection refused"                 permanent=false retry_after=false 0s
}

func ExampleConfig() {
	cfg := sdk.Config{
		"url":      "https://hooks.example.com/x",
		"timeout":  "5s",
		"retries":  3.0, // JSON numbers arrive as float64
		"channels": "#ops, #alerts",
		"verbose":  "true",
	}
	fmt.Println(cfg.String("url", ""))
	fmt.Println(cfg.Duration("timeout", time.Second))
	fmt.Println(cfg.Int("retries", 1), cfg.Int("missing", 1))
	fmt.Println(cfg.Strings("channels"))
	fmt.Println(cfg.Bool("verbose", false))
	// Output:
	// https://hooks.example.com/x
	// 5s
	// 3 1
	// [#ops #alerts]
	// true
}

func ExampleDecodeData() {
	e := event.New()
	e.SetID("ev-1")
	e.SetType(schemas.TypeAlertFired)
	e.SetSource("/plugbus/broker")
	_ = e.SetData(event.ApplicationJSON, schemas.Alert{ID: "disk", Severity: schemas.SeverityCritical, Summary: "disk full"})

	alert, err := sdk.DecodeData[schemas.Alert](e)
	fmt.Println(alert.ID, alert.Severity, err)

	_, err = sdk.DecodeData[[]int](e)
	fmt.Println(sdk.IsPermanent(err))
	// Output:
	// disk critical <nil>
	// true
}

func ExampleMain() {
	m := schemas.Manifest{Name: "hello", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "greet"}}}
	// `hello define` prints m; `hello listen -s nats://…` serves.
	sdk.Main(m, func(p *sdk.Plugin) error {
		p.HandleAction("greet", func(_ context.Context, a *sdk.Action) (any, error) {
			name, err := a.String("name", "world")
			return "hello " + name, err
		})
		return nil
	})
}

func ExamplePlugin_Run() {
	p, err := sdk.New(schemas.Manifest{Name: "hello", Version: "1.0.0"})
	if err != nil {
		panic(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	nc, err := sdk.Connect(ctx, sdk.ConnectConfig{Name: sdk.ServiceName("hello")})
	if err != nil {
		panic(err)
	}
	if err := p.Run(ctx, nc); err != nil { // blocks until ctx ends
		panic(err)
	}
}
