#!/usr/bin/env bash
# `make e2e`: builds the images, brings up the demo stack (simulator instead of Discord) under a
# unique Compose project on free host ports, checks through the simulator's control API that
# `!ping` gets its `Pong!` and that a raid yields exactly one alert and a raised verification level,
# then tears everything down: always, also on failure (after printing the services' logs).
# Images are kept (tagged spectacles/*:local), so the next run builds from cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
started=$SECONDS
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

e2e_docker
read -r amqp_port ui_port sim_port gw_port rest_port < <(e2e_free_ports 5)
project="spectaclese2e$$"
env_file=$(mktemp)
compose_files=(-f docker-compose.yml -f docker-compose.demo.yml)
cleanup_files=()
e2e_env_file local "e2e-$RANDOM$RANDOM"

status=1
trap 'status=$?; e2e_teardown; exit $status' EXIT
trap 'exit 130' INT TERM

e2e_build_and_up
e2e_wait_healthy 240
e2e_check_proxy_refuses_anonymous
e2e_ready_args
python3 tests/e2e/check_demo.py --simulator "http://127.0.0.1:$sim_port" "${ready_args[@]}" \
  --timeout "${E2E_TIMEOUT:-240}"
status=0
log "passed in $((SECONDS - started))s"
