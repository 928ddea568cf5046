"""``spectacles-interactions``: run the HTTP interactions ingress until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from spectacles.broker.errors import BrokerUnavailable
from spectacles.observability import HealthServer, configure_logging, get_logger, register_secret
from spectacles.settings import SettingError, exit_config_error

from ._app import InteractionsIngress
from ._settings import IngressSettings


def main() -> None:
    """Entry point: bad configuration exits 2 naming the key, no RabbitMQ exits 1."""
    try:
        configure_logging(service="interactions")  # LOG_LEVEL / LOG_FORMAT
        settings = IngressSettings.from_env()
    except SettingError as exc:
        exit_config_error("spectacles-interactions", exc)
    for password in settings.broker.passwords:
        register_secret(password)
    try:
        asyncio.run(_run(settings))
    except BrokerUnavailable as exc:
        get_logger("spectacles.interactions").error("cannot reach RabbitMQ", error=str(exc))
        raise SystemExit(1) from None


async def _run(settings: IngressSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ingress = InteractionsIngress(settings)
    async with HealthServer(settings.metrics_address, ready=ingress.ready), ingress:
        await stop.wait()
    get_logger("spectacles.interactions").info("interactions.stopped")


if __name__ == "__main__":
    main()
