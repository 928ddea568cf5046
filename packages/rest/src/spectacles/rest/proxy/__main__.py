"""``spectacles-rest-proxy``: run the REST proxy until SIGTERM/SIGINT.

In a container this is PID 1, and the kernel drops any signal PID 1 has no handler for: a
SIGTERM sent while the process was still importing would be lost and ``docker stop`` would wait
for its SIGKILL. So the handlers come first, before any heavy import (the packages load lazily),
and a signal during start-up ends the process at once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._config import ProxySettings
    from ._interactions import IngressOffer

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _exit_during_startup(signum: int, _frame: FrameType | None) -> None:
    print(
        f"spectacles-rest-proxy: {signal.Signals(signum).name} during start-up, exiting",
        file=sys.stderr,
    )
    raise SystemExit(0)


def main() -> None:
    """Entry point: settings from the environment, fail fast on bad ones, exit 0 on SIGTERM."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _exit_during_startup)
    # Only now the imports that take a second (aiohttp, prometheus, structlog).
    from spectacles.observability import configure_logging
    from spectacles.settings import SettingError, exit_config_error

    from ._config import ProxySettings
    from ._interactions import offer_from_env

    try:
        configure_logging(service="rest-proxy")  # LOG_LEVEL / LOG_FORMAT
        settings = ProxySettings.from_env()
        ingress = offer_from_env()
    except SettingError as exc:
        exit_config_error("spectacles-rest-proxy", exc)
    asyncio.run(_run(settings, ingress))


async def _run(settings: ProxySettings, ingress: IngressOffer | None) -> None:
    from spectacles.observability import get_logger

    from ._app import serve_forever

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)  # from here on: a graceful stop
    try:
        await serve_forever(settings, stop, ingress=ingress)
    except OSError as exc:  # e.g. the port is taken
        get_logger("spectacles.rest.proxy").error("rest_proxy.cannot_listen", error=str(exc))
        raise SystemExit(1) from None
    get_logger("spectacles.rest.proxy").info("rest_proxy.stopped")


if __name__ == "__main__":
    main()
