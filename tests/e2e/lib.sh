# Shared by tests/e2e/run.sh and run_cluster.sh (sourced, not run): Docker and Compose discovery,
# free host ports, the pinned env file, teardown, build, the health wait and the checks both make.
# The caller sets `project`, `env_file`, `compose_files` (an array of -f arguments) and `started`.

log() { echo "e2e: $*" >&2; }

# A Docker engine and Compose. On a machine that cannot pull images (CI here), the workplace's
# helper starts the engine and builds local stand-ins for the base images.
e2e_docker() {
  local setup=${DOCKER_LOCAL_SETUP:-$root/../shared/docker-local/setup.sh}
  if { ! docker info >/dev/null 2>&1 || [ -z "${PYTHON_IMAGE:-}" ]; } && [ -f "$setup" ]; then
    log "preparing Docker with $setup"
    eval "$(bash "$setup")"
  fi
  docker info >/dev/null 2>&1 || { log "the Docker engine does not answer ('docker info' failed)"; exit 1; }
  if [ -n "${COMPOSE:-}" ]; then read -r -a compose_cmd <<<"$COMPOSE"
  elif docker compose version >/dev/null 2>&1; then compose_cmd=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then compose_cmd=(docker-compose)
  else log "Docker Compose not found (need 'docker compose' or 'docker-compose' >= 1.28)"; exit 1; fi
}

# e2e_free_ports N: N free host ports on one line (RabbitMQ may already own 5672 here).
e2e_free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
}

# e2e_env_file TAG PASSWORD: every setting explicit, so a developer's .env cannot change what is
# tested; the caller appends its own lines. Then drops what could leak in from the caller's
# environment (it wins over an env file in Compose).
e2e_env_file() {
  cat >"$env_file" <<EOF_ENV
COMPOSE_PROJECT_NAME=$project
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.12-slim}
RABBITMQ_IMAGE=${RABBITMQ_IMAGE:-rabbitmq:4-management-alpine}
SPECTACLES_TAG=$1
RABBITMQ_USER=spectacles
RABBITMQ_PASSWORD=$2
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
EOF_ENV
  local var
  for var in $(compgen -e | grep -E '^(COMPOSE_|DISCORD_|SIMULATOR_|RABBITMQ_|RAID_|PING_|REST_PROXY_|GATEWAY_|BROKER_|LOG_|AMQP_)'); do
    unset "$var"
  done
  export PYTHON_IMAGE
}

compose() {
  "${compose_cmd[@]}" --project-name "$project" --env-file "$env_file" "${compose_files[@]}" \
    --profile demo "$@"
}

# Always, also on failure (after printing the services' logs). Images are kept for the cache.
e2e_teardown() {
  if [ "$status" != 0 ]; then
    log "FAILED after $((SECONDS - started))s; the services' logs follow"
    compose ps >&2 || true
    compose logs --no-color --tail=300 >&2 || true
  fi
  log "tearing down project $project"
  compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 \
    || compose down --volumes --remove-orphans >&2 || true
  rm -f "$env_file" "${cleanup_files[@]}"
  # Superseded builds of our own images only (untagged, carrying our label); the cache stays.
  docker image prune -f --filter label=io.spectacles.image >/dev/null 2>&1 || true
}

e2e_build_and_up() {
  log "building images (${compose_cmd[*]}, base $PYTHON_IMAGE)"
  local build_log
  build_log=$(mktemp)
  if ! compose build >"$build_log" 2>&1; then
    tail -n 80 "$build_log" >&2; rm -f "$build_log"; log "image build failed"; exit 1
  fi
  rm -f "$build_log"
  log "built in $((SECONDS - started))s; starting the demo stack as project $project"
  compose up -d >&2
}

# e2e_wait_healthy SECONDS: every container up, and healthy where it has a healthcheck.
e2e_wait_healthy() {
  local deadline=$((SECONDS + $1)) pending id state
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
}

# The REST proxy serves nobody without REST_PROXY_AUTH (it would otherwise answer as the bot).
e2e_check_proxy_refuses_anonymous() {
  local code
  code=$(python3 - "http://127.0.0.1:$rest_port/api/v10/users/@me" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
PY
)
  [ "$code" = 401 ] || { log "the REST proxy answered $code without REST_PROXY_AUTH (want 401)"; exit 1; }
}

# Fills ready_args with the readiness URLs of the gateway, the proxy and both workers.
e2e_ready_args() {
  ready_args=(--ready "http://127.0.0.1:$gw_port/readyz" --ready "http://127.0.0.1:$rest_port/readyz")
  local worker port
  for worker in ping raid-guard; do
    port=$(compose port "$worker" 8080 | tail -n 1 | awk -F: '{print $NF}')
    [ -n "$port" ] || { log "no published metrics port for $worker"; exit 1; }
    ready_args+=(--ready "http://127.0.0.1:$port/readyz")
  done
}
