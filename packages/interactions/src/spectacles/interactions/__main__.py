"""``spectacles-interactions``: run the HTTP interactions ingress until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from spectacles.broker.errors import BrokerUnavailable
from spectacles.observability import HealthServer, configure_logging, get_logger, register_secret

from ._app import InteractionsIngress
from ._settings import ConfigError, IngressSettings


def main() -> None:
    """Entry point: bad configuration exits 2 naming the key, no RabbitMQ exits 1."""
    try:
        configure_logging(service="interactions")  # LOG_LEVEL / LOG_FORMAT
        settings = IngressSettings.from_env()
        metrics_address = os.environ.get("METRICS_ADDRESS") or "0.0.0.0:8080"
    except (ConfigError, ValueError) as exc:
        print(f"spectacles-interactions: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for password in settings.broker.passwords:
        register_secret(password)
    try:
        asyncio.run(_run(settings, metrics_address))
    except BrokerUnavailable as exc:
        get_logger("spectacles.interactions").error("cannot reach RabbitMQ", error=str(exc))
        raise SystemExit(1) from None


async def _run(settings: IngressSettings, metrics_address: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ingress = InteractionsIngress(settings)
    async with HealthServer(metrics_address, ready=ingress.ready), ingress:
        await stop.wait()
    get_logger("spectacles.interactions").info("interactions.stopped")


if __name__ == "__main__":
    main()
