#!/usr/bin/env bash
# Runs the Compose stack: `make up|demo|down|logs|ps` call this as `bash scripts/stack.sh <target>`.
#   up     the stack against real Discord (needs DISCORD_TOKEN in .env)
#   demo   the stack against the built-in Discord simulator (chat + raid scenarios), no token
#          (extra arguments of up/demo go to `compose up`, e.g. stack.sh demo --scale ping=3)
#   up-cluster / demo-cluster   the same on a 3-node RabbitMQ cluster (docker-compose.cluster.yml)
#   down   stop and remove the stack's containers (add -v to drop RabbitMQ's volume too)
#   logs   follow the logs (optionally of some services: stack.sh logs ping raid-guard)
#   ps     list the services and their health
# Works with `docker compose` (v2) and `docker-compose` (v1.28+); $COMPOSE, when set, wins.
set -euo pipefail
cd "$(dirname "$0")/.."

# Host ports the stack publishes, with their defaults (docker-compose.yml).
# (GATEWAY_METRICS_PORT is empty by default: each gateway replica gets a free port.)
declare -A PORT_DEFAULTS=([RABBITMQ_PORT]=5672 [RABBITMQ_UI_PORT]=15672
  [REST_PROXY_PORT]=8081 [SIMULATOR_PORT]=8000)

die() { echo "stack: $*" >&2; exit 1; }
say() { echo "stack: $*" >&2; }

# A setting's value: the environment first (as Compose does), else the last KEY=... line of .env.
setting() {
  local key=$1 default=${2-} value
  if [ -n "${!key+x}" ]; then value=${!key}
  elif [ -f .env ] && value=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}=" .env | tail -n 1) \
       && [ -n "$value" ]; then
    value=${value#*=}; value=${value%$'\r'}
    value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
  else value=""; fi
  [ -n "$value" ] && echo "$value" || echo "$default"
}

detect_compose() {
  if [ -n "${COMPOSE:-}" ]; then read -r -a COMPOSE_CMD <<<"$COMPOSE"
  elif docker compose version >/dev/null 2>&1; then COMPOSE_CMD=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then COMPOSE_CMD=(docker-compose)
  else
    die "neither 'docker compose' (v2) nor 'docker-compose' (v1.28+) found; install Docker Compose: https://docs.docker.com/compose/install/"
  fi
}

require_engine() {
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer ('docker info' failed); start Docker and retry"
}

# Compose with the stack's files: the base, the demo override (harmless for down/logs/ps: it only
# changes settings), and the user's docker-compose.override.yml when present (e.g. extra gateways).
compose() {
  local files=(-f docker-compose.yml)
  [ "${WITH_DEMO:-0}" = 1 ] && files+=(-f docker-compose.demo.yml)
  [ "${WITH_CLUSTER:-0}" = 1 ] && files+=(-f docker-compose.cluster.yml)
  [ -f docker-compose.override.yml ] && files+=(-f docker-compose.override.yml)
  "${COMPOSE_CMD[@]}" "${files[@]}" "$@"
}

# Where each gateway replica's /metrics is (the host ports are free ones unless pinned).
gateway_metrics() {
  local urls index=1 address
  while address=$(compose "$@" port --index "$index" gateway 8080 2>/dev/null) && [ -n "$address" ]; do
    urls+="http://${address}/metrics "
    index=$((index + 1))
  done
  echo "${urls:-(no gateway running)}"
}

# `up -d`, translating the most common failure (a host port taken) into the .env key to change.
compose_up() {
  local log rc=0
  log=$(mktemp)
  compose "$@" 2>&1 | tee "$log" || rc=$?  # pipefail: compose's status
  if [ "$rc" != 0 ]; then
    if grep -qiE "address already in use|port is already allocated" "$log"; then
      local port key hint=""
      # "listen tcp4 127.0.0.1:5672: bind: address already in use" (or "Bind for ...:5672 failed")
      port=$(grep -oE '(listen tcp[46]? |Bind for )[0-9.]+:[0-9]+' "$log" | head -n 1 | grep -oE '[0-9]+$' || true)
      for key in "${!PORT_DEFAULTS[@]}"; do
        [ "$(setting "$key" "${PORT_DEFAULTS[$key]}")" = "$port" ] && hint=$key
      done
      if [ -n "$hint" ]; then
        say "host port $port is already in use: set $hint to a free port in .env (see .env.example)"
      else
        say "a host port is already in use: set free ports in .env (see .env.example):"
        say "  ${!PORT_DEFAULTS[*]}"
      fi
    fi
    rm -f "$log"; exit "$rc"
  fi
  rm -f "$log"
}

# The stack's secrets: broker passwords per role and the REST proxy's shared secret. Their dev-*
# defaults (docker-compose.yml) are only for `make demo` on a laptop.
SECRET_KEYS=(RABBITMQ_PASSWORD RABBITMQ_GATEWAY_PASSWORD RABBITMQ_WORKER_PASSWORD RABBITMQ_INTERACTIONS_PASSWORD
  REST_PROXY_AUTH)
declare -A DEV_SECRETS=([RABBITMQ_PASSWORD]=dev-password [RABBITMQ_GATEWAY_PASSWORD]=dev-gateway-password
  [RABBITMQ_WORKER_PASSWORD]=dev-worker-password
  [RABBITMQ_INTERACTIONS_PASSWORD]=dev-interactions-password [REST_PROXY_AUTH]=dev-proxy-auth)

# A random secret safe in an AMQP URL (letters and digits only, 192 bits).
new_secret() {
  python3 -c 'import secrets; print(secrets.token_hex(24))' 2>/dev/null \
    || od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

# Against real Discord: never a dev default. A secret that is unset gets a strong one written to
# .env (created from .env.example when missing; git-ignored); one set to a dev default is refused.
ensure_secrets() {
  local key value generated=()
  for key in "${SECRET_KEYS[@]}"; do
    value=$(setting "$key")
    if [ "$value" = "${DEV_SECRETS[$key]}" ]; then
      die "$key is the development default '${DEV_SECRETS[$key]}', which \`make up\` refuses against real Discord: delete its line from .env (a strong one is then generated) or set your own"
    fi
    [ -n "$value" ] && continue
    [ -f .env ] || { cp .env.example .env; chmod 600 .env; }
    value=$(new_secret)
    if grep -qE "^[[:space:]]*${key}=[[:space:]]*$" .env; then
      sed -i.bak -E "s|^[[:space:]]*${key}=[[:space:]]*$|${key}=${value}|" .env && rm -f .env.bak
    else
      printf '%s=%s\n' "$key" "$value" >>.env
    fi
    generated+=("$key")
  done
  [ ${#generated[@]} -eq 0 ] || say "generated ${generated[*]} into .env (keep that file private)"
}

# Waits (bounded) until every started container with a healthcheck reports healthy.
wait_healthy() {
  local deadline=$((SECONDS + ${STACK_WAIT_SECONDS:-180})) ids id status pending
  ids=$(compose ps -q)
  while :; do
    pending=""
    for id in $ids; do
      status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{if eq .State.Status "exited"}}-{{.State.ExitCode}}{{end}}{{end}}' "$id" 2>/dev/null || echo gone)
      # exited-0: a one-shot that did its job (rabbit-setup)
      case $status in healthy|running|exited-0) ;; *) pending+=" $(docker inspect -f '{{.Name}}' "$id" 2>/dev/null | tr -d /)=$status" ;; esac
    done
    [ -z "$pending" ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      say "still not healthy after ${STACK_WAIT_SECONDS:-180}s:$pending"
      say "look at the logs: make logs"
      return 1
    fi
    sleep 3
  done
}

cmd_up() {
  local token
  token=$(setting DISCORD_TOKEN)
  if [ -z "$token" ]; then
    cat >&2 <<'MSG'
stack: DISCORD_TOKEN is not set, so the stack cannot log in to Discord.

  1. Discord Developer Portal (https://discord.com/developers/applications) -> your application
     (or "New Application") -> Bot -> Reset Token, and copy the token.
  2. On the same Bot page, under "Privileged Gateway Intents", enable
     "Server Members Intent" and "Message Content Intent" (the gateway identifies with
     GUILD_MEMBERS and MESSAGE_CONTENT; without them Discord closes the connection with 4014).
  3. cp .env.example .env   (if you have no .env yet) and set  DISCORD_TOKEN=<your token>
  4. make up

No token at hand? `make demo` runs the same stack against the built-in Discord simulator.
MSG
    exit 1
  fi
  ensure_secrets
  require_engine
  # A previous `make demo` left the simulator running; the real stack does not need it.
  WITH_DEMO=1 compose --profile demo rm -s -f simulator >/dev/null 2>&1 || true
  compose_up up -d --build --remove-orphans "$@"
  wait_healthy || { compose ps; exit 1; }
  compose ps
  cat >&2 <<MSG

stack: up, connected to Discord.
  logs             make logs      (or: ${COMPOSE_CMD[*]} logs -f gateway ping raid-guard)
  RabbitMQ UI      http://127.0.0.1:$(setting RABBITMQ_UI_PORT 15672)  (user $(setting RABBITMQ_USER spectacles), password RABBITMQ_PASSWORD in .env)
  gateway metrics  $(gateway_metrics) (/healthz, /readyz, /cluster)
  stop             make down
MSG
}

cmd_demo() {
  require_engine
  # Every service logs in to the simulator with its token (the environment wins over .env).
  export DISCORD_TOKEN
  DISCORD_TOKEN=$(setting SIMULATOR_TOKEN demo-token)
  WITH_DEMO=1 compose_up --profile demo up -d --build --remove-orphans "$@"
  WITH_DEMO=1 wait_healthy || { WITH_DEMO=1 compose --profile demo ps; exit 1; }
  WITH_DEMO=1 compose --profile demo ps
  local ui sim
  ui=$(setting RABBITMQ_UI_PORT 15672)
  sim=$(setting SIMULATOR_PORT 8000)
  cat >&2 <<MSG

stack: the demo is running against the Discord simulator (scenarios: $(setting SIMULATOR_SCENARIOS chat,raid)).
  watch the channels   http://127.0.0.1:${sim}/   (the bot answers !ping; a raid raises the alarm in #mod-log)
  worker logs          make logs   (or: ${COMPOSE_CMD[*]} logs -f ping raid-guard)
  RabbitMQ UI          http://127.0.0.1:${ui}   (user $(setting RABBITMQ_USER spectacles), password RABBITMQ_PASSWORD in .env, default dev-password)
  note                 unset secrets use the dev-* defaults (fine on a laptop); \`make up\` generates strong ones
  gateway metrics      $(WITH_DEMO=1 gateway_metrics --profile demo) (/cluster: who runs which shard)
  stop                 make down
MSG
}

main() {
  local target=${1:-}
  [ $# -gt 0 ] && shift
  detect_compose
  case $target in
    up) cmd_up "$@" ;;
    demo) cmd_demo "$@" ;;
    # The cluster overlay (three RabbitMQ nodes); down/logs/ps include it, so they cover both.
    up-cluster) WITH_CLUSTER=1 cmd_up "$@" ;;
    demo-cluster) WITH_CLUSTER=1 cmd_demo "$@" ;;
    down) require_engine; WITH_DEMO=1 WITH_CLUSTER=1 compose --profile demo down --remove-orphans "$@" ;;
    logs) require_engine; WITH_DEMO=1 WITH_CLUSTER=1 compose --profile demo logs -f --tail=200 "$@" ;;
    ps) require_engine; WITH_DEMO=1 WITH_CLUSTER=1 compose --profile demo ps "$@" ;;
    *) die "usage: bash scripts/stack.sh up|demo|up-cluster|demo-cluster|down|logs|ps" ;;
  esac
}

main "$@"
