# syntax=docker/dockerfile:1
# One image with every plugbus binary: broker, hostd, busctl, localbus,
# webhook-sink and busbench in /usr/local/bin, the sample plugins in
# /usr/local/lib/plugbus/plugins. Static binaries (CGO off) on distroless,
# run as the distroless nonroot user (65532). deployments/compose and the
# Helm chart (deployments/helm/plugbus) run it; docs/deploy.md says how.
#
#   docker build -t plugbus:dev .
#
# `make deploy-check` checks this file without a container engine: it parses
# it, checks the stages, the base and the user, runs the build stage's RUN
# lines on this machine (with OUT set to a temporary directory) and checks
# that every binary the compose file and the chart start is in what they
# build (deployments/check).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# OUT is laid out as the final image's filesystem (the runtime stage copies
# /out; the check sets OUT to a temporary directory).
ARG OUT=/out
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p "$OUT/usr/local/bin" "$OUT/usr/local/lib/plugbus/plugins" && \
    go build -trimpath -ldflags=-s -o "$OUT/usr/local/bin/" ./cmd/... && \
    for p in plugins/*/; do \
      n=$(basename "$p"); \
      go build -trimpath -ldflags=-s -o "$OUT/usr/local/lib/plugbus/plugins/$n" "./plugins/$n" || exit 1; \
    done
# Directories the containers write to (the runtime stage gives them to the
# nonroot user: a named volume mounted on one starts with that owner).
RUN mkdir -p "$OUT/var/lib/plugbus/data" "$OUT/var/lib/plugbus/auth" \
      "$OUT/var/lib/plugbus/hostd" "$OUT/var/lib/plugbus/host-creds" && \
    chmod -R 0700 "$OUT/var/lib/plugbus"

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/usr/local/ /usr/local/
COPY --from=build --chown=65532:65532 /out/var/lib/plugbus/ /var/lib/plugbus/
USER 65532:65532
WORKDIR /var/lib/plugbus
# The broker's /healthz and /metrics (with --http 0.0.0.0:8080).
EXPOSE 8080
# No entrypoint: a container names the binary it runs (broker, hostd,
# busctl, …); without a command it runs the broker.
CMD ["/usr/local/bin/broker"]
