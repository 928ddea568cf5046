"""The old import path, ``spectacles.broker.worker``, still works and says where the SDK went."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

import spectacles.worker

NAMES = spectacles.worker.__all__
# The SDK's names that changed since the old path: the old module keeps offering the old name.
RENAMED = {"Handler": "EventHandler"}
OLD_NAMES = sorted({next((o for o, n in RENAMED.items() if n == name), name) for name in NAMES})


def old_module() -> object:
    return importlib.import_module("spectacles.broker.worker")


@pytest.mark.parametrize("name", OLD_NAMES)
def test_each_old_name_warns_and_is_the_same_object(name: str) -> None:
    new_name = RENAMED.get(name, name)
    with pytest.warns(DeprecationWarning, match=rf"import {new_name} from spectacles\.worker"):
        old = getattr(old_module(), name)
    assert old is getattr(spectacles.worker, new_name)


def test_from_import_warns_at_the_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from spectacles.broker.worker import Worker, WorkerSettings

    assert Worker is spectacles.worker.Worker
    assert WorkerSettings is spectacles.worker.WorkerSettings
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 2
    assert {w.filename for w in deprecations} == {__file__}


def test_the_old_module_exports_exactly_the_sdk() -> None:
    module = old_module()
    assert sorted(module.__all__) == OLD_NAMES  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="NoSuchThing"):
        module.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_without_the_worker_installed_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "spectacles.worker", None)  # as if not installed
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ImportError, match="install spectacles-worker"),
    ):
        old_module().Worker  # type: ignore[attr-defined]  # noqa: B018
