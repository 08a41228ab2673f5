# plugbus — see README.md. `make run` starts the whole bus locally; `make test`
# is what CI runs.
GO       ?= go
BIN      ?= bin
PLUGINS  := $(notdir $(wildcard plugins/*))
GOFLAGS  ?=

.PHONY: all build run test vet fmt fmt-check clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/broker, bin/hostd, bin/busctl, bin/localbus, bin/webhook-sink and bin/plugins/NAME
	@mkdir -p $(BIN)/plugins
	$(GO) build $(GOFLAGS) -buildvcs=auto -o $(BIN)/ ./cmd/...
	@for p in $(PLUGINS); do echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p"; $(GO) build $(GOFLAGS) -buildvcs=auto -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; done

run: build ## the whole bus: broker (embedded NATS), hostd with the sample plugins, webhook sink; Ctrl-C stops all
	@BIN=$(BIN) exec $(BIN)/localbus

vet: ## go vet and gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# make test runs three lanes side by side. The fault suite mostly waits (on
# kills, elections, TTLs and paced loads: make test used about 1.2 of the 2
# cores with two lanes), so it runs as two processes beside the race run:
#   race:    the race run, then the fuzz scenario (its instrumented builds
#            are CPU work)
#   faults:  the single-node scenarios
#   cluster: the cluster scenarios (TestCluster*)
# Each lane writes its own rows (bin/faults-*.json); make test-faults runs
# the whole suite in one process, as the table in docs/reliability.md is
# taken (-update).
test: vet ## vet, then every test with the race detector and the fault suite (docs/reliability.md) side by side
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-lane-race test-lane-faults test-lane-cluster

.PHONY: test-lane-race test-lane-faults test-lane-cluster
test-lane-race:
	@$(MAKE) --no-print-directory test-short
	@$(MAKE) --no-print-directory test-fuzz

test-lane-faults:
	@$(MAKE) --no-print-directory test-faults FAULTS_SKIP='^(TestFuzz|TestCluster.*)$$'

test-lane-cluster:
	@$(MAKE) --no-print-directory test-faults FAULTS_RUN='^TestCluster' FAULTS_RESULTS=$(CURDIR)/bin/faults-cluster-results.json

.PHONY: test-short
test-short: ## every test with the race detector, the fault suite's scenarios skipped (-short)
	$(GO) test -race -short -timeout 12m ./...

# FAULTS_RUN and FAULTS_SKIP: go test -run and -skip patterns for the
# fault suite; FAULTS_RESULTS: where its rows go.
FAULTS_RUN ?=
FAULTS_SKIP ?=
FAULTS_RESULTS ?= $(CURDIR)/bin/faults-results.json
.PHONY: test-faults test-fuzz
test-faults: ## the fault suite: real processes killed, hung, flooded and fed bad input; rows in bin/faults-results.json
	$(GO) test -count=1 -timeout 20m $(if $(FAULTS_RUN),-run '$(FAULTS_RUN)') $(if $(FAULTS_SKIP),-skip '$(FAULTS_SKIP)') ./internal/faults -results $(FAULTS_RESULTS)

test-fuzz: ## the fault suite's fuzz scenario alone (every Fuzz target of the module); its row in bin/faults-fuzz-results.json
	@$(MAKE) --no-print-directory test-faults FAULTS_RUN='^TestFuzz$$' FAULTS_RESULTS=$(CURDIR)/bin/faults-fuzz-results.json

.PHONY: dashboard-screenshots
dashboard-screenshots: ## the dashboard's screenshots in docs/img (docs/dashboard.md), from make run's binaries in chromium
	$(GO) test -count=1 -run TestDashboardDoneMeans ./internal/e2e -update

.PHONY: deploy-check
deploy-check: ## validate deployments/ and the Dockerfile with no container engine or cluster (docs/deploy.md): compose-spec loader, nats-server -t, the Dockerfile's build stage run here, helm lint/template | kubeconform, promtool
	cd deployments/check && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

.PHONY: bench bench-quick bench-doc bench-peers bench-peers-quick
bench: build ## raw NATS vs plugbus, every case in full (docs/performance.md says how long): table, bench/results/latest.json, then docs/performance.md from it
	$(BIN)/busbench -broker-bin $(BIN)/broker -out bench/results/latest.json
	@$(MAKE) --no-print-directory bench-doc

bench-doc: build ## docs/performance.md's results, targets (met or not) and peers from bench/results/latest.json and bench/results/peers.json, running nothing
	$(BIN)/busbench -from bench/results/latest.json -peers bench/results/peers.json -doc docs/performance.md

bench-quick: build ## every case small and short, each figure once (about a minute): the ratios, no targets (CI runs it); bench/results/quick.json
	$(BIN)/busbench -quick -runs 1 -ratios -broker-bin $(BIN)/broker

# bench/peers is its own module (it depends on hashicorp/go-plugin; the main
# module does not).
bench-peers: build ## plugbus's real topology beside hashicorp/go-plugin (net/rpc, gRPC), same work, same run: bench/results/peers.json, then docs/performance.md (bench-doc)
	cd bench/peers && $(GO) build $(GOFLAGS) -o ../../$(BIN)/peerbench .
	$(BIN)/peerbench
	@$(MAKE) --no-print-directory bench-doc

bench-peers-quick: ## the same, small: bench/results/peers-quick.json
	cd bench/peers && $(GO) build $(GOFLAGS) -o ../../$(BIN)/peerbench .
	$(BIN)/peerbench -quick -out bench/results/peers-quick.json

fmt: ## gofmt every file
	gofmt -w $$(git ls-files '*.go')

clean: ## remove binaries and the local data dir
	rm -rf $(BIN) data
