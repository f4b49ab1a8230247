"""The ``>>>`` examples in dsqlkit's docstrings run, so that documented behaviour stays true.

Every module under ``src/dsqlkit`` is imported and its doctests run; a module whose optional
extra is not installed (Django, SQLAlchemy, ...) is skipped, not failed. Modules are found on disk,
so a new one is covered without being listed here.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
#: The pytest plugin registers fixtures when imported by pytest itself: not imported twice.
NOT_IMPORTED = {"dsqlkit.pytest_plugin", "dsqlkit.__main__"}


def _modules() -> list[str]:
    names = []
    for path in sorted((SRC / "dsqlkit").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name not in NOT_IMPORTED and ">>>" in path.read_text():
            names.append(name)
    return names


MODULES = _modules()


def test_some_modules_have_doctests():
    assert "dsqlkit.stats" in MODULES and "dsqlkit.retry" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name and not exc.name.startswith("dsqlkit"):
            pytest.skip(f"{name} needs {exc.name} (an optional extra)")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name} (see the output)"
