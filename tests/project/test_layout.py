"""The layout a newcomer reads in a minute, kept true by tests.

- no import circle among the modules of ``imports/``, imports inside functions included (grimp reads every
  ``import`` statement of a module, wherever it sits, so a lazy import does not hide a circle);
- at most 12 plain modules at the root of ``imports/``, and no module outside migrations over 600 lines;
- the README's "Where things live" table names every module of ``imports/``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "imports"
MAX_ROOT_MODULES = 12
MAX_MODULE_LINES = 600


def _modules() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "migrations" not in p.parts)


def _circles(package: str) -> list[tuple[str, ...]]:
    """Every pair of modules of ``package`` that reach each other, as (a, b) with a < b."""
    graph = grimp.build_graph(package, cache_dir=None)
    modules = sorted(graph.find_descendants(package) | {package})
    found: list[tuple[str, ...]] = []
    for i, a in enumerate(modules):
        reachable = graph.find_downstream_modules(a)
        for b in modules[i + 1 :]:
            if b in reachable and a in graph.find_downstream_modules(b):
                found.append((a, b))
    return found


def test_no_module_of_the_app_imports_another_in_a_circle() -> None:
    assert _circles("imports") == []


def test_the_circle_check_finds_a_circle_hidden_by_a_lazy_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failing case: a service that imports a task inside a function, and the task importing the service."""
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "services.py").write_text(
        "def start():\n    from circled import tasks\n    tasks.run()\n"
    )
    (package / "tasks.py").write_text(
        "from circled import services\n\ndef run():\n    services.start\n"
    )
    (package / "leaf.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert _circles("circled") == [("circled.services", "circled.tasks")]
    finally:
        for name in [
            m for m in sys.modules if m == "circled" or m.startswith("circled.")
        ]:
            del sys.modules[name]


def test_the_app_root_holds_at_most_twelve_plain_modules() -> None:
    root_modules = sorted(p.name for p in APP.glob("*.py") if p.name != "__init__.py")
    assert len(root_modules) <= MAX_ROOT_MODULES, root_modules


def test_no_module_outside_migrations_passes_600_lines() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def _readme_map() -> dict[str, str]:
    """The README's "Where things live" table: path cell -> what-it-holds cell."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)`[^|]*\| (.+) \|$", section, flags=re.MULTILINE)
    return {path.rstrip("/"): what for path, what in rows}


def _missing_from_map(table: dict[str, str]) -> list[str]:
    missing = []
    for module in _modules():
        if module.name == "__init__.py":
            continue
        folder = str(module.parent.relative_to(ROOT))
        what = table.get(folder, "")
        if f"`{module.stem}`" not in what:
            missing.append(str(module.relative_to(ROOT)))
    return missing


def test_the_readme_map_names_every_module_of_the_app() -> None:
    assert _missing_from_map(_readme_map()) == []


def test_the_map_check_notices_a_module_left_out() -> None:
    table = _readme_map()
    assert "imports/jobs/limiter.py" not in _missing_from_map(table)
    table["imports/jobs"] = table["imports/jobs"].replace("`limiter`", "the limiter")
    assert "imports/jobs/limiter.py" in _missing_from_map(table)
