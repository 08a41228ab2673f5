// Package check is `make deploy-check`: it validates deployments/ and the
// Dockerfile without a container engine or a cluster (docs/deploy.md says
// what it checks and what it cannot). It is a module of its own so that
// the compose-spec loader, the Dockerfile parser and the Kubernetes schema
// tooling stay out of plugbus's go.mod.
package check
