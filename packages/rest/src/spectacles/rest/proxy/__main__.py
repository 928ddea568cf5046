"""``spectacles-rest-proxy``: run the REST proxy until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

from spectacles.observability import configure_logging, get_logger

from ._app import serve_forever
from ._config import ProxySettings
from ._interactions import IngressOffer, offer_from_env


def main() -> None:
    """Entry point: settings from the environment, fail fast on bad ones, exit 0 on SIGTERM."""
    try:
        configure_logging(service="rest-proxy")  # LOG_LEVEL / LOG_FORMAT
        settings = ProxySettings.from_env()
        ingress = offer_from_env()
    except ValueError as exc:
        print(f"spectacles-rest-proxy: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(_run(settings, ingress))


async def _run(settings: ProxySettings, ingress: IngressOffer | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve_forever(settings, stop, ingress=ingress)
    except OSError as exc:  # e.g. the port is taken
        get_logger("spectacles.rest.proxy").error("rest_proxy.cannot_listen", error=str(exc))
        raise SystemExit(1) from None
    get_logger("spectacles.rest.proxy").info("rest_proxy.stopped")


if __name__ == "__main__":
    main()
