// Package schemas holds the plugbus wire contract: the JSON Schema (2020-12)
// documents for every core event payload, the plugin manifest and every
// request/reply envelope, embedded into the binary, plus the Go types that
// marshal to documents those schemas accept.
//
// Validate a document against its schema with [Validate]; every schema has a
// stable $id (see [SchemaID]) that core CloudEvents carry as their dataschema.
package schemas
