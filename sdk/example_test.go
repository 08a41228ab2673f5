package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
	"github.com/plugbus/plugbus/sdk/client"
	"github.com/plugbus/plugbus/wire"
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
	fmt.Println(p.Name(), p.Prefix(), wire.PluginService(p.Name()))

	_, err = sdk.New(schemas.Manifest{Name: "incrementer", Version: "one"})
	fmt.Println(errors.Is(err, sdk.ErrInvalidManifest), err)
	// Output:
	// incrementer dev plugbus-plugin-incrementer
	// true invalid manifest: invalid_field: field "manifest.version": must be a semantic version such as 1.2.3 (got "one") (field manifest.version)
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
	nc, err := sdk.Connect(ctx, sdk.ConnectConfig{Name: wire.PluginService("hello")})
	if err != nil {
		panic(err)
	}
	if err := p.Run(ctx, nc); err != nil { // blocks until ctx ends
		panic(err)
	}
}

func ExamplePlugin_OnPreDeploy() {
	p, _ := sdk.New(schemas.Manifest{Name: "registry-guard", Version: "1.0.0",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}})
	guard := func(_ context.Context, job schemas.JobDeployRequest) (*schemas.HookResponse, error) {
		if !strings.HasPrefix(job.Image, "registry.internal/") {
			return sdk.Reject(fmt.Sprintf("image %q is not from registry.internal", job.Image)), nil
		}
		if job.Labels["team"] == "" {
			return sdk.ContinueWith(map[string]any{"labels": map[string]string{"team": "unknown"}})
		}
		return sdk.Continue(), nil
	}
	p.OnPreDeploy(guard)

	// The SDK calls guard with the job being deployed.
	for _, job := range []schemas.JobDeployRequest{
		{Name: "web", Version: "1", Image: "docker.io/nginx"},
		{Name: "web", Version: "1", Image: "registry.internal/nginx"},
		{Name: "web", Version: "1", Image: "registry.internal/nginx", Labels: map[string]string{"team": "web"}},
	} {
		resp, _ := guard(context.Background(), job)
		b, _ := json.Marshal(resp)
		fmt.Println(string(b))
	}
	// Output:
	// {"outcome":"reject","reason":"image \"docker.io/nginx\" is not from registry.internal"}
	// {"outcome":"continue","patch":{"labels":{"team":"unknown"}}}
	// {"outcome":"continue"}
}

func ExamplePlugin_OnRuntimeEnv() {
	p, _ := sdk.New(schemas.Manifest{Name: "proxy-env", Version: "1.0.0",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobRuntimeEnv}}})
	p.OnRuntimeEnv(func(_ context.Context, job schemas.JobDeployRequest) (map[string]string, error) {
		env := map[string]string{}
		if _, set := job.Env["HTTP_PROXY"]; !set { // a default: leave the job's own value alone
			env["HTTP_PROXY"] = "http://proxy.internal:3128"
		}
		return env, nil
	})
}

func ExamplePlugin_OnDockerfileInjection() {
	p, _ := sdk.New(schemas.Manifest{Name: "ca-certs", Version: "1.0.0",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobDockerfileInjection}}})
	p.OnDockerfileInjection(func(context.Context, schemas.JobDeployRequest) (string, error) {
		return "COPY internal-ca.pem /usr/local/share/ca-certificates/\nRUN update-ca-certificates\n", nil
	})
}

func ExamplePlugin_HandleHook() {
	p, _ := sdk.New(schemas.Manifest{Name: "quiet-hours", Version: "1.0.0",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify, Timeout: schemas.Duration(time.Second)}}})
	quiet := func(_ context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
		alert, err := req.Alert()
		if err != nil {
			return nil, err
		}
		if alert.Severity == schemas.SeverityInfo {
			return sdk.Reject("info alerts are suppressed during quiet hours"), nil
		}
		return sdk.Continue(), nil
	}
	p.HandleHook(schemas.HookAlertPreNotify, quiet)

	resp, err := quiet(context.Background(), &sdk.HookRequest{HookRequest: schemas.HookRequest{
		Hook: schemas.HookAlertPreNotify, Object: "alert/backup-done",
		Payload: json.RawMessage(`{"id":"backup-done","severity":"info","summary":"backup finished"}`),
	}})
	fmt.Println(resp.Outcome, resp.Reason, err)
	// Output:
	// reject info alerts are suppressed during quiet hours <nil>
}

func ExampleHookRequest_Job() {
	req := &sdk.HookRequest{HookRequest: schemas.HookRequest{
		Hook: schemas.HookJobRuntimeEnv, ChainID: "c1", Object: "job/web", Step: 1,
		Payload: json.RawMessage(`{"name":"web","version":"3","image":"nginx","env":{"PORT":"80"}}`),
		Env:     map[string]string{"PORT": "80", "TZ": "UTC"}, // collected so far
	}}
	job, err := req.Job()
	fmt.Println(job.Name, job.Version, job.Image, job.Env, err)

	_, err = req.DeletedJob() // the payload of job.pre_delete only
	fmt.Println(err)
	// Output:
	// web 3 nginx map[PORT:80] <nil>
	// sdk: HookRequest.DeletedJob reads the payload of job.pre_delete, not of job.runtime_env; use Decode or the accessor of job.runtime_env
}

func ExampleContinueWith() {
	resp, err := sdk.ContinueWith(map[string]any{
		"params": map[string]any{"incrementer/step": 1, "dry_run": nil}, // set one param, remove another
	})
	b, _ := json.Marshal(resp)
	fmt.Println(string(b), err)

	_, err = sdk.ContinueWith([]string{"not", "an", "object"})
	fmt.Println(err)
	// Output:
	// {"outcome":"continue","patch":{"params":{"dry_run":null,"incrementer/step":1}}} <nil>
	// hook patch must be a JSON object (a merge patch), got ["not","an","object"]
}

func ExampleReject() {
	for _, resp := range []*schemas.HookResponse{
		sdk.Continue(),
		sdk.Reject(`image "docker.io/evil" matches none of the allowed patterns: registry.internal/*`),
		sdk.RejectWithCode("maintenance", "machine m1 is in maintenance until 10:00"),
	} {
		b, _ := json.Marshal(resp)
		fmt.Println(string(b))
	}
	// Output:
	// {"outcome":"continue"}
	// {"outcome":"reject","reason":"image \"docker.io/evil\" matches none of the allowed patterns: registry.internal/*"}
	// {"outcome":"reject","reason":"machine m1 is in maintenance until 10:00","code":"maintenance"}
}

func ExampleEnv() {
	b, _ := json.Marshal(sdk.Env(map[string]string{"TZ": "UTC", "HTTP_PROXY": "http://proxy:3128"}))
	fmt.Println(string(b))
	// Output:
	// {"outcome":"continue","env":{"HTTP_PROXY":"http://proxy:3128","TZ":"UTC"}}
}

func ExampleFragment() {
	b, _ := json.Marshal(sdk.Fragment("RUN apk add --no-cache ca-certificates\n"))
	fmt.Println(string(b))
	// Output:
	// {"outcome":"continue","fragment":"RUN apk add --no-cache ca-certificates\n"}
}

func ExamplePlugin_Use() {
	p, _ := sdk.New(schemas.Manifest{Name: "timed", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "ping", Model: "machines"}}})
	// One middleware sees every handler call: init, config, verify,
	// actions, hooks and events.
	p.Use(func(next sdk.Next) sdk.Next {
		return func(ctx context.Context, c *sdk.Call) (any, error) {
			start := time.Now()
			res, err := next(ctx, c)
			p.Logger().Debug().Str("kind", c.Kind).Str("name", c.Name).Dur("took", time.Since(start)).Err(err).Msg("handled")
			return res, err
		}
	})
	p.HandleAction("ping", func(context.Context, *sdk.Action) (any, error) { return "pong", nil })
	fmt.Println(p.Name(), "wraps its handlers")
	// Output: timed wraps its handlers
}

func ExamplePlugin_Client() {
	p, _ := sdk.New(schemas.Manifest{Name: "tagger", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "tag", Model: "machines", RequiredParams: []string{"tagger/tag"}}}})
	// The client may be taken before Run (in setup) and used from handlers.
	bus := p.Client()
	p.HandleAction("tag", func(ctx context.Context, a *sdk.Action) (any, error) {
		tag, _ := a.String("tagger/tag", "")
		return bus.SetMachineParam(ctx, a.Object, "tagger/last", tag)
	})
	// Before Run connects, calls say so.
	_, err := bus.GetMachine(context.Background(), "m1")
	fmt.Println(errors.Is(err, client.ErrNotConnected))
	// Output: true
}

func ExamplePlugin_OnShutdown() {
	p, _ := sdk.New(schemas.Manifest{Name: "flusher", Version: "1.0.0"})
	var pending []string
	// Runs when the plugin stops: after it stopped taking work, before the
	// connection drains.
	p.OnShutdown(func(ctx context.Context) error {
		fmt.Println("flushing", len(pending), "records")
		return nil
	})
	fmt.Println(p.Name(), "will flush on shutdown")
	// Output: flusher will flush on shutdown
}

func ExamplePlugin_Emit() {
	p, _ := sdk.New(schemas.Manifest{Name: "counter", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "bump", Model: "machines"}}})
	p.HandleAction("bump", func(ctx context.Context, a *sdk.Action) (any, error) {
		// Stored in the event stream as
		// io.plugbus.plugin.counter.count.v1.bumped from /plugbus/plugins/counter.
		id, err := p.Emit(ctx, "count.v1.bumped", map[string]string{"machine": a.Object})
		return map[string]string{"event": id}, err
	})
	// Other plugins subscribe to it by type:
	fmt.Println(wire.PluginEventType(p.Name(), "count.v1.bumped"))
	// Output: io.plugbus.plugin.counter.count.v1.bumped
}

func ExamplePlugin_Once() {
	p, _ := sdk.New(schemas.Manifest{Name: "billing", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "invoice", Model: "machines", RequiredParams: []string{"billing/order"}}}})
	charge := func(ctx context.Context, order string) error { return nil } // the side effect
	p.HandleAction("invoice", func(ctx context.Context, a *sdk.Action) (any, error) {
		order, _ := a.String("billing/order", "")
		// Charged once per order however often the action is retried:
		// the key is marked done after charge succeeds (a crash in between
		// charges again; a failed charge is tried again).
		err := p.Once(ctx, "order:"+order, func(ctx context.Context) error { return charge(ctx, order) })
		return map[string]string{"order": order}, err
	})
	// Keys may hold any character; they are kept below the plugin's name.
	fmt.Println(schemas.HandledKey(p.Name(), "order:42"))
	// Before Run connects, Once says so.
	err := p.Once(context.Background(), "order:42", func(context.Context) error { return nil })
	fmt.Println(errors.Is(err, sdk.ErrNotRunning))
	// Output:
	// billing.=b3JkZXI6NDI
	// true
}

func ExamplePlugin_OnceByEventID() {
	p, _ := sdk.New(schemas.Manifest{Name: "notifier", Version: "1.0.0",
		Events: &schemas.EventSubscription{Types: []string{schemas.TypeAlertFired}}})
	post := func(ctx context.Context, e event.Event) error { return nil } // POST the alert
	// An event delivered again after it was posted (its acknowledgement
	// lost) is acknowledged without posting it again.
	p.HandleEvent(schemas.TypeAlertFired, p.OnceByEventID(post))
	// The event id is the key, kept below the plugin's name.
	fmt.Println(schemas.HandledKey(p.Name(), "2ZqmZSIbwxUGh1aWOvYqS1"))
	// Output: notifier.2ZqmZSIbwxUGh1aWOvYqS1
}
