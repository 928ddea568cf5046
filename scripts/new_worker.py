"""Scaffold a new worker: ``make new-worker NAME=foo`` (or ``python scripts/new_worker.py foo``).

Creates ``workers/foo`` from ``scripts/worker-template`` (a workspace package with the console
script ``spectacles-foo``, a module, a test and a README), registers it in the root
``pyproject.toml`` (dependency, workspace source, mypy path), adds a service to
``docker-compose.yml`` above the marker line, and runs ``uv lock``. Every step that cannot be done
automatically is printed as an instruction instead; nothing existing is overwritten.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = Path(__file__).resolve().parent / "worker-template"
COMPOSE_MARKER = "# new-worker services go above this line"
COMPOSE_SNIPPET = "compose-service.yml"
_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# Taken by the core: spectacles-<name> is already a distribution, or the name is a Compose service.
_RESERVED = frozenset(
    {
        "gateway",
        "rest",
        "rabbit",
        "simulator",
        "broker",
        "models",
        "worker",
        "interactions",
        "observability",
    }
)


class ScaffoldError(Exception):
    """The worker cannot be created; the message says why and what to do."""


@dataclass(frozen=True)
class WorkerName:
    """The names derived from the folder name ``foo-bar``."""

    name: str

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def distribution(self) -> str:
        return f"spectacles-{self.name}"

    @property
    def env_prefix(self) -> str:
        return self.module.upper()

    def render(self, text: str) -> str:
        return (
            text.replace("{{name}}", self.name)
            .replace("{{module}}", self.module)
            .replace("{{env}}", self.env_prefix)
        )


def validate(name: str, root: Path) -> WorkerName:
    if not _NAME_RE.match(name):
        raise ScaffoldError(
            f"invalid worker name {name!r}: use lowercase letters, digits and single hyphens, "
            "starting with a letter (e.g. spam-filter); it names the folder, the queue and the "
            "console script"
        )
    if name in _RESERVED:
        raise ScaffoldError(f"worker name {name!r} is taken by a core service; pick another")
    if (root / "workers" / name).exists():
        raise ScaffoldError(f"workers/{name} already exists; pick another name or remove it")
    return WorkerName(name)


def render_tree(worker: WorkerName, root: Path, template: Path = TEMPLATE_DIR) -> list[Path]:
    """Copy the template to ``workers/<name>``, substituting names in paths and contents."""
    target = root / "workers" / worker.name
    created: list[Path] = []
    for source in sorted(template.rglob("*")):
        relative = source.relative_to(template)
        if source.is_dir() or relative.name == COMPOSE_SNIPPET or "__pycache__" in relative.parts:
            continue
        destination = target / worker.render(str(relative))
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(worker.render(source.read_text()))
        created.append(destination)
    return created


def register_in_pyproject(worker: WorkerName, root: Path) -> list[str]:
    """Add the worker to the root pyproject (dependency, uv source, mypy path); returns todo."""
    path = root / "pyproject.toml"
    text = path.read_text()
    todo: list[str] = []
    dist = worker.distribution

    dependencies = re.search(r"(?ms)^\[project\].*?^dependencies = \[\n(.*?)^\]", text)
    if dependencies and f'"{dist}"' not in dependencies.group(1):
        text = text[: dependencies.end(1)] + f'    "{dist}",\n' + text[dependencies.end(1) :]
    elif not dependencies:
        todo.append(f'add "{dist}" to [project].dependencies in pyproject.toml')

    sources = re.search(r"(?ms)^\[tool\.uv\.sources\]\n(.*?)(?=^\[|\Z)", text)
    if sources and f"{dist} =" not in sources.group(1):
        block = sources.group(1).rstrip("\n") + "\n"
        new_block = block + f"{dist} = {{ workspace = true }}\n"
        text = text[: sources.start(1)] + new_block + text[sources.start(1) + len(block) :]
    elif not sources:
        todo.append(f"add `{dist} = {{ workspace = true }}` under [tool.uv.sources]")

    src = f"workers/{worker.name}/src"
    mypy_path = re.search(r"(?ms)^mypy_path = \[(.*?)\]", text)
    if mypy_path and f'"{src}"' not in mypy_path.group(1):
        entries = mypy_path.group(1).rstrip().rstrip(",")
        body = f'{entries},\n    "{src}",\n' if entries.strip() else f'\n    "{src}",\n'
        text = text[: mypy_path.start(1)] + body + text[mypy_path.end(1) :]
    elif not mypy_path:
        todo.append(f'add "{src}" to [tool.mypy].mypy_path')

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # never leave a broken pyproject behind
        return [f"pyproject.toml could not be edited automatically ({exc}); add {dist} by hand"]
    path.write_text(text)
    return todo


def wire_compose(worker: WorkerName, root: Path, template: Path = TEMPLATE_DIR) -> str:
    """Insert the service above the marker in docker-compose.yml, or return what to add."""
    snippet = worker.render((template / COMPOSE_SNIPPET).read_text())
    compose = root / "docker-compose.yml"
    text = compose.read_text() if compose.exists() else ""
    if re.search(rf"(?m)^  {re.escape(worker.name)}:\s*$", text):
        return f"docker-compose.yml already has a service {worker.name!r}; left as is"
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.strip() == COMPOSE_MARKER:
            lines.insert(index, snippet if snippet.endswith("\n") else snippet + "\n")
            compose.write_text("".join(lines))
            return f"added service {worker.name!r} to docker-compose.yml"
    return (
        f"docker-compose.yml has no line {COMPOSE_MARKER!r}; add this service under "
        f"`services:` yourself:\n\n{snippet}"
    )


def lock(root: Path) -> str:
    uv = shutil.which("uv")
    if uv is None:
        return "uv not found: run `uv lock && uv sync` once it is installed"
    result = subprocess.run(
        [uv, "lock"], cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        return f"`uv lock` failed; run it yourself:\n{result.stderr.strip()}"
    return "uv.lock updated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scaffold a Spectacles worker in workers/NAME.")
    parser.add_argument("name", help="folder / queue / console-script name, e.g. spam-filter")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument("--no-lock", action="store_true", help="skip `uv lock`")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    try:
        worker = validate(args.name, root)
    except ScaffoldError as exc:
        print(f"new-worker: {exc}", file=sys.stderr)
        return 2

    created = render_tree(worker, root)
    print(f"created workers/{worker.name} ({len(created)} files):")
    for path in created:
        print(f"  {path.relative_to(root)}")
    todo = register_in_pyproject(worker, root)
    if not todo:
        print(f"registered {worker.distribution} in pyproject.toml")
    print(wire_compose(worker, root))
    if not args.no_lock:
        print(lock(root))
    for item in todo:
        print(f"TODO: {item}")
    print(
        "\nnext steps:\n"
        "  uv sync                                   # install the new package\n"
        f"  uv run pytest workers/{worker.name}              # its tests\n"
        f"  DISCORD_TOKEN=... uv run spectacles-{worker.name}  # run it locally\n"
        f"  docker compose up -d --build {worker.name}        # or in the stack\n"
        "see docs/writing-a-worker.md"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
