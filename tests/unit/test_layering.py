"""The import layering of DESIGN.md, read from the code's own imports (lazy ones included).

``dsqlkit.dsql`` <- ``dsqlkit.auth`` <- connector core <- driver modules <- integrations;
``local.wire`` and ``local.rules`` depend only on ``dsqlkit.dsql`` (plus third-party parsers); the
connector never imports the emulator (``dsqlkit.local``); and no module takes part in an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def imports_of(name: str) -> set[str]:
    """The dsqlkit modules ``name`` imports anywhere in its body, except under TYPE_CHECKING."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}

# Layers that may not import these prefixes (the key's modules and their submodules).
FORBIDDEN = {
    "dsqlkit.dsql": ("dsqlkit.",),
    "dsqlkit.auth": ("dsqlkit.local", "dsqlkit.bench", "dsqlkit.psycopg", "dsqlkit.asyncpg"),
    "dsqlkit.local.wire": ("dsqlkit.local.backend", "dsqlkit.local.server", "dsqlkit.bench"),
    "dsqlkit.local.rules": ("dsqlkit.local.wire", "dsqlkit.local.server", "dsqlkit.bench"),
}
CONNECTOR_EXEMPT = ("dsqlkit.local", "dsqlkit.bench", "dsqlkit.pytest_plugin", "dsqlkit.cli")


def _within(module: str, prefix: str) -> bool:
    return module == prefix.rstrip(".") or module.startswith(prefix.rstrip(".") + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_below_it(layer: str) -> None:
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _within(module, layer)
        for target in targets
        if any(_within(target, bad) for bad in FORBIDDEN[layer]) and not _within(target, layer)
    )
    assert offending == [], f"{layer} imports a layer above it: {offending}"


def test_connector_never_imports_the_emulator() -> None:
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if not any(_within(module, exempt) for exempt in CONNECTOR_EXEMPT)
        for target in targets
        if _within(target, "dsqlkit.local")
    )
    assert offending == []


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            strong(name)
    assert cycles == []


def test_the_check_sees_imports() -> None:
    # Guards against a reader that finds nothing and so passes everything.
    assert "dsqlkit.dsql" in GRAPH["dsqlkit.auth.sigv4"]
    assert "dsqlkit.local.rules.policy" in GRAPH["dsqlkit.local.rules.session"]
