"""`GET /gateway/bot`: where to connect, how many shards, and the IDENTIFY budget.

The gateway package talks to this one route itself (aiohttp) instead of depending on the REST
client: it is the only REST call a gateway makes, once, at start-up.
"""

from __future__ import annotations

from typing import Final

import aiohttp
import msgspec

from spectacles.broker import Backoff
from spectacles.models import GatewayBot

from .errors import GatewayUnreachable

__all__ = ["fetch_gateway_bot"]

ATTEMPTS: Final = 3
TIMEOUT: Final = 10.0


async def fetch_gateway_bot(api_url: str, token: str, *, retry_delay: float = 1.0) -> GatewayBot:
    """Ask Discord (or the simulator at `api_url`); retry transient failures a few times."""
    headers = {
        "Authorization": f"Bot {token}",
        "User-Agent": "DiscordBot (https://github.com/spec-tacles, 0.1)",
    }
    url = f"{api_url.rstrip('/')}/gateway/bot"
    last = "no attempt"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    backoff = Backoff(retry_delay, retry_delay * 2 ** (ATTEMPTS - 2))
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        for attempt in range(ATTEMPTS):
            if attempt:
                await backoff.sleep()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    if response.status == 401:
                        raise GatewayUnreachable(
                            "401 Unauthorized: the bot token is invalid; set a valid one in "
                            "DISCORD_TOKEN or `token` (without the `Bot ` prefix)"
                        )
                    if response.status == 429 or response.status >= 500:
                        last = f"HTTP {response.status}"
                        continue
                    if response.status != 200:
                        raise GatewayUnreachable(f"HTTP {response.status} from {url}")
                    try:
                        return msgspec.json.decode(body, type=GatewayBot)
                    except msgspec.DecodeError as exc:
                        raise GatewayUnreachable(f"unexpected answer from {url}: {exc}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
    raise GatewayUnreachable(f"{url} unreachable after {ATTEMPTS} attempts ({last})")
