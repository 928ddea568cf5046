"""Deprecated home of the worker SDK, kept so ``from spectacles.broker.worker import Worker`` works.

The SDK is the ``spectacles-worker`` distribution now (``spectacles.worker``). This module holds
no code: each name is looked up in ``spectacles.worker`` on first use (module ``__getattr__``,
PEP 562), with a ``DeprecationWarning``, so ``spectacles-broker`` does not depend on the worker
(nor on the REST client the worker uses) at install time. Without ``spectacles-worker``
installed, the lookup fails with an ``ImportError`` saying what to install.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers only: at run time the names are looked up lazily
    from spectacles.worker import (
        DEFAULT_API_URL,
        CommandContext,
        CommandHandler,
        CommandSender,
        Context,
        QueueType,
        Worker,
        WorkerConfigError,
        WorkerSettings,
    )
    from spectacles.worker import EventHandler as Handler

__all__ = [
    "DEFAULT_API_URL",
    "CommandContext",
    "CommandHandler",
    "CommandSender",
    "Context",
    "Handler",
    "QueueType",
    "Worker",
    "WorkerConfigError",
    "WorkerSettings",
]


# Names the SDK has since renamed: the old name still resolves, to the new object.
_RENAMED = {"Handler": "EventHandler"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    new_name = _RENAMED.get(name, name)
    warnings.warn(
        f"spectacles.broker.worker is deprecated; import {new_name} from spectacles.worker "
        "(distribution spectacles-worker)",
        DeprecationWarning,
        stacklevel=2,
    )
    try:
        module = importlib.import_module("spectacles.worker")
    except ModuleNotFoundError as error:
        if error.name not in ("spectacles", "spectacles.worker"):
            raise  # the worker is installed but one of its own imports is missing
        raise ImportError(
            f"{name} moved to the spectacles-worker distribution (spectacles.worker); "
            "install spectacles-worker"
        ) from error
    return getattr(module, new_name)
