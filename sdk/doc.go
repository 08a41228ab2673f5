// Package sdk is the Go SDK for writing plugbus plugins.
//
// A plugin is a program that serves one plugbus plugin: it describes itself
// with a [schemas.Manifest], registers handlers for the lifecycle verbs
// (init, config, verify), for actions, for core events and for hook points,
// and then runs against a NATS server where the plugbus broker lives:
//
//	func main() {
//		sdk.Main(manifest, func(p *sdk.Plugin) error {
//			p.HandleAction("increment", increment)
//			p.HandleEvent(schemas.TypeAlertFired, onAlert)
//			return nil
//		})
//	}
//
// [Main] gives the binary the verbs `define` (print the manifest) and
// `listen` (connect and serve until SIGINT/SIGTERM). Programs that manage
// their own connection call [New] and [Plugin.Run] instead.
//
// What Run does, in order:
//
//  1. adds a NATS micro service "plugbus-NAME" whose endpoints init, config,
//     verify and action answer on "<prefix>.plugin.NAME.<verb>", and one
//     endpoint per hook point the manifest declares on
//     "<prefix>.hook.<hook point>.NAME", all in the default queue group, so
//     several instances share the load and `nats micro ls` lists them;
//  2. registers with the broker ("<prefix>.api.plugins.register"), retrying
//     with backoff while no broker answers; the broker runs init, config and
//     verify before it replies with the plugin's state (ACTIVE, or ERROR with
//     the reason — not fatal, the plugin keeps running and waits for config);
//  3. watches the plugin's config in the KV bucket "plugbus_configs" and
//     applies every change it did not apply itself;
//  4. when the manifest declares events, the plugin is ACTIVE and its stored
//     config has been applied by the config handler, consumes the plugin's
//     durable consumer "plugin_NAME" on the event stream and calls the
//     matching [EventHandler] for each CloudEvent (the data of core event
//     types checked against their schema first);
//  5. re-registers after a reconnect or when the broker marks it STALE.
//
// # Errors and redelivery
//
// An event handler decides what happens to the event by what it returns:
// nil acknowledges it; [Permanent] terminates it (the broker dead-letters it
// with the error as the reason); [RetryAfter] redelivers it after the given
// delay; any other error redelivers it after the next delay from the
// manifest's backoff list. A failure on the last allowed delivery terminates
// the event with the error as the reason, so the dead letter says why.
// Delivery is at least once; [Plugin.OnceByEventID] and [Plugin.Once] keep a
// side effect from being repeated by a redelivery.
//
// An action handler's error reaches the caller: a *schemas.Error as it is
// (so handlers can answer missing_param or invalid_field), any other error
// as plugin_error with the error's message.
//
// # Hooks
//
// A hook point is a place where the broker asks plugins before or while it
// acts (job.pre_deploy, job.runtime_env, ...; see [schemas.HookPoints]). A
// plugin declares the hook points it implements in the manifest's hooks and
// sets a handler for each, with [Plugin.HandleHook] or a typed helper
// ([Plugin.OnPreDeploy], [Plugin.OnRuntimeEnv],
// [Plugin.OnDockerfileInjection], [Plugin.OnBootstrapInjection],
// [Plugin.OnPreDelete], [Plugin.OnPreAction], [Plugin.OnPreNotify]). A
// handler answers with [Continue], [ContinueWith] (a merge patch of the
// payload), [Reject], [RejectWithCode], [Env] or [Fragment]; an error or a
// panic is answered as an error, and the broker applies the hook's failure
// policy. The handler's context ends a little before the hook's timeout.
//
// # Tracing
//
// Every handler's context carries the trace context of what it handles:
// the broker's span for init, config, verify, action and hook calls (the
// traceparent header of the request), and the operation that made an
// event for event handlers (the event's ce-traceparent). Calls a handler
// makes with that context ([Plugin.Emit], sdk/client) carry it on. With
// [WithTracerProvider] (which [Main] sets when OTEL_EXPORTER_OTLP_ENDPOINT
// is set) the plugin also starts a span around each handler call; without
// it, tracing costs nothing. docs/tracing.md lists the spans.
package sdk
