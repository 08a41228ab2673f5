// Package schemas holds the plugbus wire contract: the JSON Schema (2020-12)
// documents for every core event payload, the plugin manifest and every
// request/reply envelope, embedded into the binary, plus the Go types that
// marshal to documents those schemas accept.
//
// Validate a document against its schema with [Validate], or validate and
// unmarshal it in one step with [Decode]; every schema has a stable $id (see
// [SchemaID]) that core CloudEvents carry as their dataschema. The files
// themselves are served by [SchemaFS] and listed by [SchemaPaths], laid out
// like nats-io/jsm.go's schemas: api/v1/*.json, manifest/v1/manifest.json,
// events/<object>/v1/<event>.json, with shared $defs in api/v1/definitions.json.
//
// Broker API requests and the manifest reject unknown fields, so typos are
// caught; replies, registry records, events and the broker → plugin control
// requests accept them, so the contract can grow without breaking older
// readers. Failures are *[Error] values with Code [CodeInvalidField] and a
// Field naming the offending field ("manifest.events.max_deliver"), or
// [CodeBadRequest] when the body is not a JSON object.
//
// A plugin's own config schema is compiled with [CompileConfigSchema];
// [Manifest.Validate] runs every registration check on a manifest.
package schemas
