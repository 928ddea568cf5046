"""Routes: a REST path plus the parameters that decide its rate-limit bucket."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

__all__ = ["MAJOR_PARAMETERS", "Route", "route_key_for_path"]

#: Discord scopes a bucket by these path parameters: the same bucket hash with a different
#: channel/guild/webhook is a different limit.
MAJOR_PARAMETERS: Final = ("channel_id", "guild_id", "webhook_id", "webhook_token")

#: Path prefixes that Discord exempts from the 50 req/s global limit.
_GLOBAL_EXEMPT_PREFIXES: Final = ("/interactions/",)
#: ``/webhooks/{id}/{token}...``: token-authenticated webhooks, among them the interaction
#: webhooks (follow-ups, the original response), are not bound to the bot's global limit.
_TOKEN_WEBHOOK: Final = re.compile(r"^/webhooks/[^/]+/[^/?]+")


def _uses_global_limit(path: str) -> bool:
    return not (path.startswith(_GLOBAL_EXEMPT_PREFIXES) or _TOKEN_WEBHOOK.match(path))


class Route:
    """A request target: ``Route("GET", "/channels/{channel_id}", channel_id=1)``.

    ``bucket_route`` (method + template) identifies the route before Discord told us its bucket
    hash; ``major`` is the value of the major parameters, which splits a bucket per resource.
    """

    __slots__ = ("bucket_route", "major", "method", "path", "template")

    def __init__(self, method: str, template: str, **params: int | str) -> None:
        self.method = method.upper()
        self.template = template
        try:
            self.path = template.format_map({k: quote(str(v), safe="") for k, v in params.items()})
        except KeyError as missing:
            raise ValueError(
                f"route {template!r} needs parameter {missing}; got {sorted(params)}"
            ) from None
        self.bucket_route = f"{self.method} {template}"
        self.major = ":".join(str(params[name]) for name in MAJOR_PARAMETERS if name in params)

    @property
    def uses_global_limit(self) -> bool:
        """Whether the request counts against the bot's global limit."""
        return _uses_global_limit(self.path)

    def __repr__(self) -> str:
        return f"Route({self.method} {self.path})"


_ID: Final = re.compile(r"^\d{1,20}$")
_MAJOR_SEGMENTS: Final = frozenset({"channels", "guilds", "webhooks"})


def route_key_for_path(method: str, path: str) -> tuple[str, str, bool]:
    """Derive ``(bucket_route, major, uses_global_limit)`` from a concrete path.

    The proxy only sees concrete paths such as ``/channels/12/messages/34``; ids after a
    major segment stay (they are the major parameter), other ids and reaction emojis become
    placeholders so every message of a channel shares the route's bucket.
    """
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    template: list[str] = []
    major: list[str] = []
    previous = ""
    for index, segment in enumerate(segments):
        head = segments[0]
        if index == 1 and head in _MAJOR_SEGMENTS and _ID.match(segment):
            template.append(f"{{{head}}}")
            major.append(segment)
        elif index == 2 and head == "webhooks":
            # /webhooks/{id}/{token}/...: the token is part of the major parameter.
            template.append("{webhook_token}")
            major.append(segment)
        elif index in (1, 2) and head == "interactions":
            template.append("{interaction}")
        elif previous == "reactions" or _ID.match(segment):
            template.append("{id}")
        else:
            template.append(segment)
        previous = segment
    route = "/" + "/".join(template)
    return f"{method.upper()} {route}", ":".join(major), _uses_global_limit(route)
