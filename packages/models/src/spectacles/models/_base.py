"""The shared base of every payload struct."""

from __future__ import annotations

import msgspec

__all__ = ["Model"]


class Model(msgspec.Struct, kw_only=True, repr_omit_defaults=True):
    """Base of all payload structs.

    Unknown keys in the JSON are ignored (Discord adds fields, and undocumented ones such as
    ``_trace``). msgspec's ``kw_only`` is per class, so every subclass repeats ``kw_only=True``
    to declare fields in Discord's order.
    """
