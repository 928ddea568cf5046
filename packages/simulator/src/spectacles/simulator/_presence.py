"""The bot's presence: op 3 PRESENCE_UPDATE and IDENTIFY's `presence`, checked lightly.

Discord closes the connection on a malformed op 3 (missing or mistyped fields); the simulator
does the same so a client bug shows up in tests rather than in production. It uses 4002
(decode error); Discord has been seen closing with 4001 or 4002 for this, and a client treats
both alike (reconnect and resume).
IDENTIFY's `presence` is checked more leniently because Discord accepts what clients such as
discord.py send there (`status: null`, the legacy `game` key instead of `activities`).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["PRESENCE_FIELDS", "STATUSES", "presence_problem"]

STATUSES: Final = frozenset({"online", "dnd", "idle", "invisible", "offline"})
PRESENCE_FIELDS: Final = ("since", "activities", "status", "afk")


def presence_problem(d: Any, *, partial: bool = False) -> str | None:
    """What is wrong with a presence object, or None when it is acceptable.

    `partial` (IDENTIFY): fields may be missing and `status` may be null.
    """
    if not isinstance(d, dict):
        return f"presence must be an object, got {type(d).__name__}"
    if not partial:
        missing = [key for key in PRESENCE_FIELDS if key not in d]
        if missing:
            return f"presence lacks {', '.join(missing)}"
    status = d.get("status")
    if (status is not None or not partial) and status not in STATUSES:
        return f"presence status {status!r} is not one of {', '.join(sorted(STATUSES))}"
    if "activities" in d and not isinstance(d["activities"], list):
        return "presence activities must be a list"
    since = d.get("since")
    # Numbers, not only ints: discord.py sends `since: 0.0` and Discord accepts it.
    if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
        return f"presence since must be a number or null, got {since!r}"
    if "afk" in d and not isinstance(d["afk"], bool):
        return f"presence afk must be true or false, got {d['afk']!r}"
    return None
