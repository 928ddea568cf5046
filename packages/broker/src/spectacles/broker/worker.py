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
        Handler,
        QueueType,
        Worker,
        WorkerConfigError,
        WorkerSettings,
    )

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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"spectacles.broker.worker is deprecated; import {name} from spectacles.worker "
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
    return getattr(module, name)
