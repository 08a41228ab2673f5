// Command hookplugin is the fault suite's alert.pre_notify gate: a real
// plugin process built on the SDK whose hook step answers "continue" (with
// a label patch, when asked) after a delay, or once told to. The suite
// starts it with its own credentials, as any plugin.
//
// It is configured by environment, so one binary serves every scenario:
//
//	HOOKPLUGIN_NAME      plugin name (default "slow-hook")
//	HOOKPLUGIN_POLICY    the step's failure_policy: fail or ignore (default fail)
//	HOOKPLUGIN_TIMEOUT   the step's timeout (default 5s)
//	HOOKPLUGIN_PRIORITY  the step's priority (default 0)
//	HOOKPLUGIN_DELAY     how long the step takes to answer (default 1s);
//	                     past the timeout, the step is hung
//	HOOKPLUGIN_LABEL     when set, the answer patches the alert's labels
//	                     with LABEL=<plugin name>
//	HOOKPLUGIN_BLOCK     "stdin": each handler call waits for a line on
//	                     stdin before it answers (after the delay)
//	HOOKPLUGIN_REMEMBER  "1": sdk.HookAnswers answers a repeated step
//	                     (same idempotency key) without the handler
//
// On stdout it prints "HELD <object>" when the handler starts and
// "ANSWERED <object>" when it answers, so the suite can tell which
// operations were inside the hook at a given moment; and "CALL <key>
// <object>" for every step request that arrives (repeats included), "RAN
// <key> <object>" for every one the handler runs, so the suite can count
// what the plugin did per idempotency key.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
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
	label := env("HOOKPLUGIN_LABEL", "")
	priority, err := strconv.Atoi(env("HOOKPLUGIN_PRIORITY", "0"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "hookplugin: HOOKPLUGIN_PRIORITY: %v\n", err)
		os.Exit(sdk.ExitUsage)
	}
	var release chan struct{}
	if env("HOOKPLUGIN_BLOCK", "") == "stdin" {
		release = make(chan struct{})
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				release <- struct{}{}
			}
		}()
	}
	m := schemas.Manifest{
		Name:        name,
		Version:     "1.0.0",
		Description: "fault suite: an alert.pre_notify gate that answers after " + delay.String(),
		Category:    "test",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookAlertPreNotify, Timeout: schemas.Duration(timeout), FailurePolicy: policy,
			Priority: &priority}},
	}
	var mu sync.Mutex // one line at a time on stdout
	say := func(what ...string) {
		mu.Lock()
		defer mu.Unlock()
		for i, w := range what {
			if i > 0 {
				fmt.Fprint(os.Stdout, " ")
			}
			fmt.Fprint(os.Stdout, w)
		}
		fmt.Fprintln(os.Stdout)
	}
	sdk.Main(m, func(p *sdk.Plugin) error {
		// Outermost: every step request, repeats included.
		p.Use(func(next sdk.Next) sdk.Next {
			return func(ctx context.Context, c *sdk.Call) (any, error) {
				if req, ok := c.Request.(*sdk.HookRequest); ok && c.Kind == sdk.KindHook {
					say("CALL", req.IdempotencyKey, req.Object)
				}
				return next(ctx, c)
			}
		})
		if env("HOOKPLUGIN_REMEMBER", "") == "1" {
			answers, err := sdk.NewHookAnswers(sdk.DefaultHookAnswersTTL, sdk.DefaultHookAnswersSize)
			if err != nil {
				return err
			}
			p.Use(answers.Middleware())
		}
		p.HandleHook(schemas.HookAlertPreNotify, func(ctx context.Context, req *sdk.HookRequest) (*schemas.HookResponse, error) {
			say("RAN", req.IdempotencyKey, req.Object)
			say("HELD", req.Object)
			// Hung on purpose: neither the delay nor the wait for stdin is
			// cut to ctx, as a stuck plugin's would not be.
			time.Sleep(delay)
			if release != nil {
				<-release
			}
			say("ANSWERED", req.Object)
			if label != "" {
				return sdk.ContinueWith(map[string]any{"labels": map[string]string{label: name}})
			}
			return sdk.Continue(), nil
		})
		return nil
	})
}
