#!/usr/bin/env bash
# `make e2e`: builds the images, brings up the demo stack (simulator instead of Discord) under a
# unique Compose project on free host ports, checks through the simulator's control API that
# `!ping` gets its `Pong!` and that a raid yields exactly one alert and a raised verification level,
# then tears everything down: always, also on failure (after printing the services' logs).
# Images are kept (tagged spectacles/*:local), so the next run builds from cache.
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
read -r amqp_port ui_port sim_port gw_port rest_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

project="spectaclese2e$$"
env_file=$(mktemp)
# Every setting explicit, so a developer's .env cannot change what is tested.
cat >"$env_file" <<EOF
COMPOSE_PROJECT_NAME=$project
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.12-slim}
RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-rabbitmq:4-management-alpine}
SPECTACLES_TAG=local
RABBITMQ_USER=spectacles
RABBITMQ_PASSWORD=e2e-$RANDOM$RANDOM
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
for var in $(compgen -e | grep -E '^(COMPOSE_|DISCORD_|SIMULATOR_|RABBITMQ_|RAID_|PING_|REST_PROXY_|GATEWAY_|BROKER_|LOG_)'); do
  unset "$var"
done
export PYTHON_IMAGE

compose() {
  "${compose_cmd[@]}" --project-name "$project" --env-file "$env_file" \
    -f docker-compose.yml -f docker-compose.demo.yml --profile demo "$@"
}

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
  rm -f "$env_file"
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
deadline=$((SECONDS + 240))
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

python3 tests/e2e/check_demo.py --simulator "http://127.0.0.1:$sim_port" "${ready_args[@]}" \
  --timeout "${E2E_TIMEOUT:-240}"
status=0
log "passed in $((SECONDS - started))s"
