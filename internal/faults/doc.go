// Package faults is plugbus's fault suite: real processes (bin/broker on
// its embedded NATS, the plugin binaries, a webhook sink in the test),
// faults injected into them (kill -9, SIGTERM, a second broker on the data
// dir, hung hooks, malformed input, duplicate requests, a long soak), and a
// checker in the manner of Jepsen's set checker that counts what was
// offered, acknowledged, stored and delivered, and so what was lost,
// duplicated or unexpected.
//
// The scenarios are tests (they skip with -short); `make test-faults`
// runs them with the fuzzers and writes the results table as JSON, and
// `go test ./internal/faults -update` rewrites the table at the end of
// docs/reliability.md, which also says how to read it.
package faults
