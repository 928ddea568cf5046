#!/usr/bin/env bash
# `make e2e-cluster`: the demo stack on a 3-node RabbitMQ cluster (docker-compose.cluster.yml)
# under a unique Compose project on free host ports; tests/e2e/check_cluster.py kills the node the
# gateway publishes to, then (after it rejoined) the node leading the worker queues, each under a
# flood, and checks that nothing is lost and the bot keeps answering. Tears everything down always
# (printing the services' logs on failure). Images are tagged spectacles/*:cluster (kept, so the
# next run builds from cache, and never mixed up with `make e2e`'s). The results (failover time,
# events lost) go to $E2E_CLUSTER_REPORT (default: a temporary file, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

log() { echo "e2e: $*" >&2; }
started=$SECONDS

# A Docker engine and Compose. On a machine that cannot pull images (CI here), the workplace's
# helper starts the engine and builds local stand-ins for the base images.
setup=${DOCKER_LOCAL_SETUP:-$root/../shared/docker-local/setup.sh}
if { ! docker info >/dev/null 2>&1 || [ -z "${PYTHON_IMAGE:-}" ]; } && [ -f "$setup" ]; then
  log "preparing Docker with $setup"
  eval "$(bash "$setup")"
fi
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer ('docker info' failed)"; exit 1; }
if [ -n "${COMPOSE:-}" ]; then read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then compose_cmd=(docker-compose)
else log "Docker Compose not found (need 'docker compose' or 'docker-compose' >= 1.28)"; exit 1; fi

# Free host ports for everything the stack publishes (RabbitMQ may already own 5672 here).
read -r amqp_port ui_port sim_port gw_port rest_port amqp2_port amqp3_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

project="spectaclescluster$$"
password="e2e-$RANDOM$RANDOM"
env_file=$(mktemp)
# Every setting explicit, so a developer's .env cannot change what is tested.
cat >"$env_file" <<EOF
COMPOSE_PROJECT_NAME=$project
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.12-slim}
RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-rabbitmq:4-management-alpine}
SPECTACLES_TAG=cluster
RABBITMQ_USER=spectacles
RABBITMQ_PASSWORD=$password
RABBITMQ_ERLANG_COOKIE=e2e-cookie-$RANDOM$RANDOM$RANDOM
AMQP_URL_ORDER=shuffle
RABBITMQ_GATEWAY_PASSWORD=e2e-gw-$RANDOM$RANDOM
RABBITMQ_WORKER_PASSWORD=e2e-wk-$RANDOM$RANDOM
REST_PROXY_AUTH=e2e-proxy-$RANDOM$RANDOM
RABBITMQ_PORT=$amqp_port
RABBITMQ_UI_PORT=$ui_port
SIMULATOR_PORT=$sim_port
GATEWAY_METRICS_PORT=$gw_port
REST_PROXY_PORT=$rest_port
SIMULATOR_TOKEN=e2e-token
DISCORD_TOKEN=e2e-token
SIMULATOR_SCENARIOS=chat
LOG_LEVEL=INFO
LOG_FORMAT=json
EOF
# The environment wins over an env file in Compose: drop what could leak in from the caller.
for var in $(compgen -e | grep -E '^(COMPOSE_|DISCORD_|SIMULATOR_|RABBITMQ_|RAID_|PING_|REST_PROXY_|GATEWAY_|BROKER_|LOG_|AMQP_)'); do
  unset "$var"
done
export PYTHON_IMAGE

# Test-only additions: host ports for nodes 2 and 3 (the counter connects to all three), and a
# third guild so each of the two raids has a guild of its own.
extra_file=$(mktemp --suffix=.yml)
cat >"$extra_file" <<EOF
services:
  rabbit-2:
    ports: ["127.0.0.1:$amqp2_port:5672"]
  rabbit-3:
    ports: ["127.0.0.1:$amqp3_port:5672"]
  simulator:
    environment:
      SIM_GUILDS: "3"
EOF

compose() {
  "${compose_cmd[@]}" --project-name "$project" --env-file "$env_file" \
    -f docker-compose.yml -f docker-compose.demo.yml -f docker-compose.cluster.yml \
    -f "$extra_file" --profile demo "$@"
}
report=${E2E_CLUSTER_REPORT:-$(mktemp --suffix=.json)}

status=1
teardown() {
  if [ "$status" != 0 ]; then
    log "FAILED after $((SECONDS - started))s; the services' logs follow"
    compose ps >&2 || true
    compose logs --no-color --tail=300 >&2 || true
  fi
  log "tearing down project $project"
  compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 \
    || compose down --volumes --remove-orphans >&2 || true
  rm -f "$env_file" "$extra_file"
  # Superseded builds of our own images only (untagged, carrying our label); the cache stays.
  docker image prune -f --filter label=io.spectacles.image >/dev/null 2>&1 || true
}
trap 'status=$?; teardown; exit $status' EXIT
trap 'exit 130' INT TERM

log "building images (${compose_cmd[*]}, base $PYTHON_IMAGE)"
build_log=$(mktemp)
if ! compose build >"$build_log" 2>&1; then
  tail -n 80 "$build_log" >&2; rm -f "$build_log"; log "image build failed"; exit 1
fi
rm -f "$build_log"
log "built in $((SECONDS - started))s; starting the demo stack as project $project"
compose up -d >&2

# Every container up, and healthy where it has a healthcheck (bounded).
deadline=$((SECONDS + 300))
while :; do
  pending=""
  for id in $(compose ps -q); do
    state=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else if eq .State.Status "exited"}}{{.State.ExitCode}}{{end}}' "$id")
    case $state in
      *" running healthy" | *" running " | *" exited 0") ;;  # exited 0: a one-shot (rabbit-setup)
      *" exited "*) log "a one-shot service failed: ${state# /}"; exit 1 ;;
      *) pending+=" ${state# /}" ;;
    esac
  done
  [ -z "$pending" ] && break
  if [ $SECONDS -ge $deadline ]; then log "services not healthy in time:$pending"; exit 1; fi
  sleep 3
done
log "stack healthy after $((SECONDS - started))s"

# The REST proxy serves nobody without REST_PROXY_AUTH (it would otherwise answer as the bot).
code=$(python3 - "http://127.0.0.1:$rest_port/api/v10/users/@me" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
PY
)
[ "$code" = 401 ] || { log "the REST proxy answered $code without REST_PROXY_AUTH (want 401)"; exit 1; }

ready_args=(--ready "http://127.0.0.1:$gw_port/readyz" --ready "http://127.0.0.1:$rest_port/readyz")
for worker in ping raid-guard; do
  port=$(compose port "$worker" 8080 | tail -n 1 | awk -F: '{print $NF}')
  [ -n "$port" ] || { log "no published metrics port for $worker"; exit 1; }
  ready_args+=(--ready "http://127.0.0.1:$port/readyz")
done

node_args=()
for node in rabbit rabbit-2 rabbit-3; do node_args+=(--node "$node=$(compose ps -q "$node")"); done
urls=""
for port in "$amqp_port" "$amqp2_port" "$amqp3_port"; do
  urls+="${urls:+,}amqp://spectacles:$password@127.0.0.1:$port/%2F"
done
UV=$(command -v uv || echo "$HOME/.local/bin/uv")
"$UV" run --frozen python tests/e2e/check_cluster.py --simulator "http://127.0.0.1:$sim_port" \
  --amqp-url "$urls" "${node_args[@]}" --gateway "$(compose ps -q gateway)" \
  "${ready_args[@]}" --report "$report" --timeout "${E2E_TIMEOUT:-240}"
status=0
log "passed in $((SECONDS - started))s; results ($report):"
cat "$report" >&2
