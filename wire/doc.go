// Package wire is what every plugbus component speaks on NATS: the broker,
// hostd, the plugin SDK, busctl and the dashboard all import it, and none of
// them imports another's package to talk to it.
//
// It holds:
//
//   - names: the subject prefix rule ([ValidatePrefix], [DefaultPrefix]),
//     every subject ([APISubject], [PluginSubject], [HookSubject],
//     [EventSubject], [DLQSubject]) and the micro service names
//     ([BrokerService], [PluginService]);
//   - the request/reply convention: [Call] sends a JSON request and returns
//     an error reply as a *schemas.Error (so errors.Is works across the
//     wire), [ReplyMsg] builds a reply, and the caller's deadline travels in
//     [HeaderTimeout];
//   - [Service], a NATS micro service whose handlers may run concurrently
//     while `nats micro stats` still counts every error and the real
//     processing time;
//   - the CloudEvents codec: [EncodeEvent] and [DecodeEvent] write and read
//     binary-mode CloudEvents as the CloudEvents NATS binding defines them.
//
// The JSON schemas of every body are in package schemas; wire only moves
// them.
package wire
