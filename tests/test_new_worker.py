"""`make new-worker`: scaffold into a temporary tree, then run the generated worker's own test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "new_worker.py"
MARKER = "# new-worker services go above this line"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A minimal copy of the repository root: what the script reads and edits."""
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "workers").mkdir()
    (tmp_path / "docker-compose.yml").write_text(
        f"services:\n  rabbit:\n    image: rabbitmq\n  {MARKER}\n\nvolumes:\n  rabbit-data: {{}}\n"
    )
    return tmp_path


def scaffold(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), name, "--root", str(root), "--no-lock"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_scaffolded_worker_passes_its_own_tests(tree: Path) -> None:
    result = scaffold(tree, "spam-filter")
    assert result.returncode == 0, result.stderr

    worker = tree / "workers" / "spam-filter"
    package = worker / "src" / "spectacles" / "workers" / "spam_filter"
    for path in ("__init__.py", "__main__.py", "handlers.py", "py.typed"):
        assert (package / path).is_file(), path
    assert (worker / "tests" / "test_spam_filter.py").is_file()
    assert "spam-filter" in (worker / "README.md").read_text()
    assert not (tree / "workers" / "spectacles").exists()
    assert not (package / "compose-service.yml").exists()

    project = tomllib.loads((worker / "pyproject.toml").read_text())["project"]
    assert project["name"] == "spectacles-spam-filter"
    assert project["scripts"] == {
        "spectacles-spam-filter": "spectacles.workers.spam_filter.__main__:main"
    }

    root = tomllib.loads((tree / "pyproject.toml").read_text())
    assert "spectacles-spam-filter" in root["project"]["dependencies"]
    assert root["tool"]["uv"]["sources"]["spectacles-spam-filter"] == {"workspace": True}
    assert "workers/spam-filter/src" in root["tool"]["mypy"]["mypy_path"]

    compose = (tree / "docker-compose.yml").read_text()
    assert compose.index("  spam-filter:\n") < compose.index(MARKER)
    assert "WORKER: spam-filter" in compose

    # The generated code is lint-clean with the repository's rules ...
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--config",
            str(tree / "pyproject.toml"),
            str(worker),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # ... and its own test passes (the new src/ joins the spectacles.workers namespace).
    env = {**os.environ, "PYTHONPATH": str(worker / "src")}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(worker / "tests")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_bad_or_taken_names_are_refused(tree: Path) -> None:
    bad = scaffold(tree, "Spam_Filter")
    assert bad.returncode == 2
    assert "invalid worker name" in bad.stderr

    taken = scaffold(tree, "worker")  # spectacles-worker is the SDK's distribution
    assert taken.returncode == 2
    assert "taken by a core service" in taken.stderr

    assert scaffold(tree, "greeter").returncode == 0
    again = scaffold(tree, "greeter")
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_without_the_marker_the_service_is_printed(tree: Path) -> None:
    (tree / "docker-compose.yml").write_text("services:\n  rabbit:\n    image: rabbitmq\n")
    result = scaffold(tree, "greeter")
    assert result.returncode == 0, result.stderr
    assert MARKER in result.stdout
    assert "WORKER: greeter" in result.stdout
    assert "greeter" not in (tree / "docker-compose.yml").read_text()
