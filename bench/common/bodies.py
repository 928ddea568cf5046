"""Synthetic ~1 KB MESSAGE_CREATE bodies, shaped like the simulator's flood (fallback only).

The relay figures prefer the exact bodies the gateway relayed (sampled by the consumer during the
warm-up); these stand in when no sample exists, e.g. for the worker figure run on its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DISCORD_EPOCH_MS = 1420070400000
_TEXT = (
    "Has anyone tried the new build? The loading screen feels a lot faster than last week and "
    "the memory graph finally stays flat overnight, which is honestly the best news all month."
    " Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor." * 2
)[:600]


def synthetic_bodies(n: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    bodies = []
    for i in range(n):
        message_id = str(((now_ms - DISCORD_EPOCH_MS) << 22) | (30 << 17) | i)
        author = {
            "id": str(80351110224678912 + i % 16),
            "username": f"member{i % 16}",
            "global_name": f"Member {i % 16}",
            "discriminator": "0",
            "avatar": None,
            "bot": False,
            "public_flags": 0,
        }
        body = {
            "id": message_id,
            "nonce": message_id,
            "timestamp": "2026-11-29T02:00:00.000000+00:00",
            "content": _TEXT,
            "author": author,
            "member": {
                "roles": [],
                "joined_at": "2026-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "nick": None,
            },
            "type": 0,
            "tts": False,
            "pinned": False,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "flags": 0,
            "embeds": [],
            "edited_timestamp": None,
            "components": [],
            "attachments": [],
            "channel_id": "1108813024672264213",
            "guild_id": "1108813024672264212",
        }
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def load_bodies(path: str | None, fallback: int = 64) -> list[bytes]:
    """The relayed bodies the harness sampled to `path`; synthetic ones when there is no sample."""
    if path and Path(path).exists():
        bodies = [b.encode() for b in json.loads(Path(path).read_text(encoding="utf-8"))]
        if bodies:
            return bodies
    return synthetic_bodies(fallback)
