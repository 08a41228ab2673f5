#!/usr/bin/env bash
# Runs the whole bus locally: the broker on its embedded NATS JetStream
# (data in ./data), the sample plugins and a webhook sink for
# notify-webhook. Ctrl-C stops everything. Used by `make run`.
set -euo pipefail
BIN=${BIN:-bin}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
HTTP=${PLUGBUS_HTTP:-127.0.0.1:8080}
SINK=${SINK:-127.0.0.1:8099}
export NATS_URL

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping plugbus..."
  # Plugins first, broker last, so plugins drain against a live bus.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped."
}
trap cleanup INT TERM EXIT

"$BIN/broker" --http "$HTTP" --log-format console &
pids+=($!)
for _ in $(seq 1 100); do
  if curl -fsS "http://$HTTP/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "broker exited; see its log above" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "http://$HTTP/healthz" >/dev/null || { echo "broker did not become healthy on $HTTP" >&2; exit 1; }

"$BIN/webhook-sink" --listen "$SINK" &
pids+=($!)
for p in "$BIN"/plugins/*; do
  name=$(basename "$p")
  args=(listen --log-format console)
  case "$name" in
    notify-webhook) args+=(--config "url=http://$SINK/alerts") ;;
    job-policy) args+=(--config 'allowed_images=["*"]') ;;
  esac
  "$p" "${args[@]}" &
  pids+=($!)
done

# Wait until every plugin reports ACTIVE (bounded).
for _ in $(seq 1 100); do
  if "$BIN/busctl" plugins ls -o json 2>/dev/null | grep -q '"state"' && \
     ! "$BIN/busctl" plugins ls -o json 2>/dev/null | grep '"state"' | grep -vq ACTIVE; then break; fi
  sleep 0.1
done

cat <<MSG

  plugbus is running: NATS $NATS_URL (embedded JetStream, data in ./data), HTTP http://$HTTP
  Plugins: $(cd "$BIN/plugins" && echo *)

  Try, in another terminal:
    bin/busctl plugins ls
    bin/busctl machine action m1 increment -o json
    bin/busctl machine action m1 increment --param incrementer/step=2 -o json
    bin/busctl job deploy demo --version 1 --image nginx
    bin/busctl events tail --count 5
    bin/busctl alert fire --severity critical --summary "disk full" --label host=m1
    curl -s http://$HTTP/metrics | grep plugbus_

  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" || true
echo "a plugbus process exited; stopping the rest" >&2
