package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// A plugin whose hook step does work that must not happen twice (here:
// handing out an address) remembers its answers by the step's
// idempotency key. When a broker crash cuts the chain short, the resumed
// chain sends the step again with the same key, and gets the same answer
// without the handler running again.
func ExampleHookAnswers() {
	answers, err := sdk.NewHookAnswers(sdk.DefaultHookAnswersTTL, sdk.DefaultHookAnswersSize)
	if err != nil {
		panic(err)
	}
	p, err := sdk.New(schemas.Manifest{Name: "ipam", Version: "1.0.0",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy}}})
	if err != nil {
		panic(err)
	}
	p.Use(answers.Middleware())

	next := 10
	assign := func(_ context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
		ip := fmt.Sprintf("10.0.0.%d", next)
		next++
		return sdk.ContinueWith(map[string]any{"labels": map[string]string{"ip": ip}})
	}
	p.HandleHook(schemas.HookJobPreDeploy, assign)

	// What the SDK does with each step request: the middleware, then the
	// handler.
	call := func(key string) string {
		req := &sdk.HookRequest{HookRequest: schemas.HookRequest{Hook: schemas.HookJobPreDeploy, ChainID: "Qx9-0-0", Object: "job/web",
			Payload: json.RawMessage(`{"name":"web","version":"1","image":"nginx"}`)}, IdempotencyKey: key}
		out, _ := answers.Middleware()(func(ctx context.Context, c *sdk.Call) (any, error) {
			return assign(ctx, c.Request.(*sdk.HookRequest))
		})(context.Background(), &sdk.Call{Kind: sdk.KindHook, Name: req.Hook, Request: req})
		return string(out.(*schemas.HookResponse).Patch)
	}
	fmt.Println(call(schemas.StepKey("Qx9-0-0", 0)))
	fmt.Println(call(schemas.StepKey("Qx9-0-0", 0))) // the same step, sent again
	fmt.Println(answers.Repeats())
	// Output:
	// {"labels":{"ip":"10.0.0.10"}}
	// {"labels":{"ip":"10.0.0.10"}}
	// 1
}
