// Command hookplugin is the fault suite's slow (or hung) alert.pre_notify
// gate: a real plugin process built on the SDK whose hook step answers
// "continue" only after a delay. The suite starts it with its own
// credentials, as any plugin.
//
// It is configured by environment, so one binary serves every scenario:
//
//	HOOKPLUGIN_NAME     plugin name (default "slow-hook")
//	HOOKPLUGIN_POLICY   the step's failure_policy: fail or ignore (default fail)
//	HOOKPLUGIN_TIMEOUT  the step's timeout (default 5s)
//	HOOKPLUGIN_DELAY    how long the step takes to answer (default 1s);
//	                    past the timeout, the step is hung
//
// On stdout it prints "HELD <object>" when a call arrives and
// "ANSWERED <object>" when it answers, so the suite can tell which
// operations were inside the hook at a given moment.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func duration(key, def string) time.Duration {
	d, err := time.ParseDuration(env(key, def))
	if err != nil {
		fmt.Fprintf(os.Stderr, "hookplugin: %s: %v\n", key, err)
		os.Exit(sdk.ExitUsage)
	}
	return d
}

func main() {
	name := env("HOOKPLUGIN_NAME", "slow-hook")
	policy := env("HOOKPLUGIN_POLICY", "fail")
	timeout := duration("HOOKPLUGIN_TIMEOUT", "5s")
	delay := duration("HOOKPLUGIN_DELAY", "1s")
	m := schemas.Manifest{
		Name:        name,
		Version:     "1.0.0",
		Description: "fault suite: an alert.pre_notify gate that answers after " + delay.String(),
		Category:    "test",
		Hooks:       []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify, Timeout: schemas.Duration(timeout), FailurePolicy: policy}},
	}
	var mu sync.Mutex // one line at a time on stdout
	say := func(what, object string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "%s %s\n", what, object)
	}
	sdk.Main(m, func(p *sdk.Plugin) error {
		p.HandleHook(schemas.HookAlertPreNotify, func(ctx context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
			say("HELD", req.Object)
			// Hung on purpose: the delay is not cut to ctx, as a stuck
			// plugin's would not be.
			time.Sleep(delay)
			say("ANSWERED", req.Object)
			return sdk.Continue(), nil
		})
		return nil
	})
}
