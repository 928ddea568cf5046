#!/usr/bin/env bash
# `make test-rmq4`: the fault tests (pytest marker `rmq4`) against RabbitMQ 4, the version Compose
# ships, beside `make test` on the machine's RabbitMQ (3.10 here). Starts its own throw-away
# broker container on a free loopback port under a unique name, waits for it, runs the tests with
# AMQP_URL and RABBITMQCTL pointing at it, and removes the container whatever happens.
# Extra arguments go to pytest, e.g. `bash scripts/rabbit4.sh packages/broker -x`.
# RABBITMQ4_IMAGE picks the image (default: $RABBITMQ_IMAGE, else local/rabbitmq:4.0).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { echo "rmq4: $*" >&2; }
started=$SECONDS
UV=$(command -v uv || echo "$HOME/.local/bin/uv")

# A Docker engine and a RabbitMQ 4 image. Where images cannot be pulled (CI here), the
# workplace's helper starts the engine and builds local stand-ins, as for `make e2e`.
setup=${DOCKER_LOCAL_SETUP:-$root/../shared/docker-local/setup.sh}
if { ! docker info >/dev/null 2>&1 || [ -z "${RABBITMQ_IMAGE:-}" ]; } && [ -f "$setup" ]; then
  log "preparing Docker with $setup"
  eval "$(bash "$setup")"
fi
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer ('docker info' failed)"; exit 1; }
image=${RABBITMQ4_IMAGE:-${RABBITMQ_IMAGE:-local/rabbitmq:4.0}}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
name="spectacles-rmq4-$$-$RANDOM"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting $image as $name on 127.0.0.1:$port"
docker run -d --name "$name" -p "127.0.0.1:$port:5672" \
  -e RABBITMQ_DEFAULT_USER=guest -e RABBITMQ_DEFAULT_PASS=guest "$image" >/dev/null
ready=""
for _ in $(seq 90); do
  if docker exec "$name" rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then ready=1; break; fi
  [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ] || break
  sleep 1
done
if [ -z "$ready" ]; then
  log "RabbitMQ did not start; its log:"; docker logs --tail 50 "$name" >&2 || true; exit 1
fi
version=$(docker exec "$name" rabbitmqctl -q version 2>/dev/null || echo "?")
log "RabbitMQ $version ready after $((SECONDS - started)) s; running the rmq4 tests"

status=0
AMQP_URL="amqp://guest:guest@127.0.0.1:$port/" RABBITMQCTL="docker exec $name rabbitmqctl" \
  "$UV" run --frozen pytest -m rmq4 -p no:cacheprovider --durations=5 "$@" || status=$?
log "done in $((SECONDS - started)) s against RabbitMQ $version (pytest exit $status)"
exit "$status"
