"""``new_delivery``: the consumer's fast constructor builds a genuine, read-only ``Delivery``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from spectacles.broker.delivery import Delivery, new_delivery


def test_new_delivery_equals_the_dataclass_and_stays_frozen() -> None:
    when = datetime(2026, 12, 7, tzinfo=UTC)
    fields = (b"{}", "MESSAGE_CREATE", {"seq": 1}, "0:s:1", "MESSAGE_CREATE", when, 2, True)
    rest = ("ex", "application/json", "corr", "reply", 1)
    fast = new_delivery(*fields, *rest)
    assert type(fast) is Delivery
    assert fast == Delivery(*fields, *rest)
    assert fast.attempt == 2 and fast.interruptions == 1 and fast.reply_to == "reply"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.attempt = 3  # type: ignore[misc]
    assert dataclasses.replace(fast, attempt=3).attempt == 3
    assert [f.name for f in dataclasses.fields(Delivery)] == list(Delivery.__slots__)
