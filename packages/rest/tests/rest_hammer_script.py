"""Run as a separate process by the proxy test: post N messages concurrently, print their ids.

Usage: python rest_hammer_script.py API_URL CHANNEL_ID LABEL COUNT
The token comes from HAMMER_TOKEN; without it the proxy injects one. Exits non-zero if any
message failed.
"""

import asyncio
import json
import os
import sys

from spectacles.observability import configure_logging
from spectacles.rest import RestClient


async def main(api_url: str, channel_id: int, label: str, count: int) -> None:
    token = os.environ.get("HAMMER_TOKEN")  # unset: the proxy adds the Authorization header
    async with RestClient(token, base_url=api_url, request_timeout=60.0) as rest:
        messages = await asyncio.gather(
            *(rest.create_message(channel_id, f"{label}-{i}") for i in range(count))
        )
    print(json.dumps([str(m.id) for m in messages]))


if __name__ == "__main__":
    url, channel, label, count = sys.argv[1:5]
    configure_logging("WARNING", "json", service="rest-hammer")
    asyncio.run(main(url, int(channel), label, int(count)))
