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
started=$SECONDS
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

e2e_docker
read -r amqp_port ui_port sim_port gw_port rest_port amqp2_port amqp3_port < <(e2e_free_ports 7)
project="spectaclescluster$$"
password="e2e-$RANDOM$RANDOM"
env_file=$(mktemp)
# Test-only additions: host ports for nodes 2 and 3 (the counter connects to all three), and a
# third guild so each of the two raids has a guild of its own.
extra_file=$(mktemp --suffix=.yml)
cat >"$extra_file" <<EOF_EXTRA
services:
  rabbit-2:
    ports: ["127.0.0.1:$amqp2_port:5672"]
  rabbit-3:
    ports: ["127.0.0.1:$amqp3_port:5672"]
  simulator:
    environment:
      SIM_GUILDS: "3"
EOF_EXTRA
compose_files=(-f docker-compose.yml -f docker-compose.demo.yml -f docker-compose.cluster.yml
  -f "$extra_file")
cleanup_files=("$extra_file")
e2e_env_file cluster "$password"
cat >>"$env_file" <<EOF_ENV
RABBITMQ_ERLANG_COOKIE=e2e-cookie-$RANDOM$RANDOM$RANDOM
AMQP_URL_ORDER=shuffle
EOF_ENV
report=${E2E_CLUSTER_REPORT:-$(mktemp --suffix=.json)}

status=1
trap 'status=$?; e2e_teardown; exit $status' EXIT
trap 'exit 130' INT TERM

e2e_build_and_up
e2e_wait_healthy 300
e2e_check_proxy_refuses_anonymous
e2e_ready_args

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
