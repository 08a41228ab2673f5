#!/usr/bin/env bash
# Runs the whole bus locally: the broker on its embedded NATS JetStream
# (data in ./data), every sample plugin under plugins/ and a webhook sink
# for notify-webhook. Ctrl-C stops everything. Used by `make run`.
set -uo pipefail
# Children get their own process groups, so Ctrl-C reaches only this script,
# which then stops them in order.
set -m
BIN=${BIN:-bin}
NATS_ADDR=${PLUGBUS_LISTEN:-127.0.0.1:4222}
HTTP=${PLUGBUS_HTTP:-127.0.0.1:8080}
SINK=${SINK:-127.0.0.1:8099}
DATA_DIR=${PLUGBUS_DATA_DIR:-./data}
export NATS_URL="nats://$NATS_ADDR"
# busctl needs --server only when NATS is not where it looks by default.
SERVER_FLAG=""
[ "$NATS_ADDR" != "127.0.0.1:4222" ] && SERVER_FLAG=" --server $NATS_URL"

in_use() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$NATS_ADDR" "$HTTP" "$SINK"; do
  if in_use "$addr"; then
    echo "run: $addr is already in use: is another 'make run' (or broker) running? Stop it first." >&2
    exit 1
  fi
done

pids=()
stopping=0
cleanup() {
  stopping=1
  trap - INT TERM
  echo
  echo "stopping plugbus..."
  stop_all
  echo "stopped."
  exit 0
}
# stop_all stops the plugins and the sink first and waits for them, then the
# broker, so plugins drain against a live bus.
stop_all() {
  for ((i=${#pids[@]}-1; i>=1; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for ((i=${#pids[@]}-1; i>=1; i--)); do wait "${pids[$i]}" 2>/dev/null || true; done
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
}
trap cleanup INT TERM

"$BIN/broker" --listen "$NATS_ADDR" --http "$HTTP" --data-dir "$DATA_DIR" &
pids+=($!)
healthy=0
for _ in $(seq 1 100); do
  if curl -fsS "http://$HTTP/healthz" >/dev/null 2>&1; then healthy=1; break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "run: the broker exited; see its log above" >&2; exit 1; fi
  sleep 0.1
done
if [ "$healthy" != 1 ]; then echo "run: the broker did not become healthy on $HTTP" >&2; cleanup; fi

"$BIN/webhook-sink" --listen "$SINK" &
pids+=($!)
plugins=()
for dir in plugins/*/; do
  name=$(basename "$dir")
  [ -x "$BIN/plugins/$name" ] || { echo "run: $BIN/plugins/$name is missing: run 'make build'" >&2; cleanup; }
  args=(listen)
  case "$name" in
    notify-webhook) args+=(--config "url=http://$SINK/alerts") ;;
    job-policy) args+=(--config 'allowed_images=["*"]' --config 'env={"PLUGBUS_MANAGED":"true"}') ;;
  esac
  "$BIN/plugins/$name" "${args[@]}" &
  pids+=($!)
  plugins+=("$name")
done

# Wait until every plugin reports ACTIVE (bounded).
for _ in $(seq 1 100); do
  states=$("$BIN/busctl" plugins ls -o json 2>/dev/null | grep -c '"state": "ACTIVE"' || true)
  [ "${states:-0}" -ge "${#plugins[@]}" ] && break
  sleep 0.1
done

cat <<MSG

  plugbus is running: NATS $NATS_URL (embedded JetStream, data in $(cd "$DATA_DIR" && pwd)), HTTP http://$HTTP
  Plugins: ${plugins[*]}   (webhook sink on http://$SINK prints what notify-webhook sends)

  Try, in another terminal:
    bin/busctl$SERVER_FLAG plugins ls
    bin/busctl$SERVER_FLAG machine action m1 increment -o json
    bin/busctl$SERVER_FLAG machine action m1 increment --param incrementer/step=2 -o json
    bin/busctl$SERVER_FLAG job deploy demo --version 1 --image nginx
    bin/busctl$SERVER_FLAG events tail --count 5
    bin/busctl$SERVER_FLAG hooks ls
    bin/busctl$SERVER_FLAG alert fire --severity critical --summary "disk full" --label host=m1
    curl -s http://$HTTP/metrics | grep plugbus_

  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
if [ "$stopping" = 0 ]; then
  echo "run: a plugbus process exited unexpectedly; stopping the rest" >&2
  trap - INT TERM
  stop_all
  exit 1
fi
