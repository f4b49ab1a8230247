"""A host-name shim for the benchmark's child processes: a DSQL-style name resolves to the local
endpoint in that process only (no ``/etc/hosts``, no root, nothing else on the machine changes).

The official asyncpg connector dials the ``<cluster>.dsql.<region>.on.aws`` name it is given, and
asyncpg has no ``hostaddr``: locally that name must resolve. The benchmark starts its children with
this module, copied as ``sitecustomize.py`` into a private folder put first on ``PYTHONPATH``, and
``DSQLKIT_BENCH_RESOLVE=name=address[,name=address]``. Python runs it at interpreter start-up, before
the timed imports, identically for every implementation. It replaces ``socket.getaddrinfo`` (which
``socket.create_connection``, libraries and asyncio's default loop all call) by one that answers
the listed names with their address and passes every other name through unchanged. TLS still
verifies: the client checks the certificate against the name it dialled, and the local endpoint's
certificate covers its DSQL-style name (``EndpointConfig.hostnames``).

This module is stdlib only and imports nothing at start-up beyond what Python already loaded:
``socket`` is patched the moment something imports it (a ``sys.meta_path`` hook), so the shim does
not pre-load ``socket`` and move its import cost out of the measured import.

Example (what the benchmark does for a child)::

    env = {**os.environ, **child_environment({"abc.dsql.us-east-1.on.aws": "127.0.0.1"})}
    subprocess.run([sys.executable, "-c", "import socket; print(socket.getaddrinfo(...))"], env=env)
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing at start-up would skew the timed imports
if TYPE_CHECKING:
    from typing import Any

#: The environment variable that lists the names to answer: ``name=address[,name=address]``.
ENVIRONMENT_VARIABLE = "DSQLKIT_BENCH_RESOLVE"
#: Marks the patched function, so installing twice never wraps it twice.
_MARK = "_dsqlkit_bench_resolver"


def parse_mapping(text: str) -> dict[str, str]:
    """``"a.example=127.0.0.1,b.example=::1"`` -> ``{"a.example": "127.0.0.1", ...}``.

    Names are compared case-insensitively and without a trailing dot, as DNS does.

    Example::

        >>> parse_mapping("X.dsql.us-east-1.on.aws.=127.0.0.1")
        {'x.dsql.us-east-1.on.aws': '127.0.0.1'}
    """
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, address = item.partition("=")
        if not equals or not name.strip() or not address.strip():
            raise ValueError(
                f"{ENVIRONMENT_VARIABLE}: {item!r} is not name=address "
                "(example: abc.dsql.us-east-1.on.aws=127.0.0.1)"
            )
        mapping[_normalise(name)] = address.strip()
    return mapping


def format_mapping(mapping: dict[str, str]) -> str:
    """The inverse of :func:`parse_mapping`."""
    return ",".join(f"{name}={address}" for name, address in mapping.items())


def _normalise(name: str) -> str:
    return name.strip().lower().rstrip(".")


def wrap_getaddrinfo(original: Any, mapping: dict[str, str]) -> Any:
    """``original`` (a ``socket.getaddrinfo``) answering the names in ``mapping`` with their address."""
    if getattr(original, _MARK, False):
        return original

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        name = host.decode("idna") if isinstance(host, bytes) else host
        if isinstance(name, str):
            host = mapping.get(_normalise(name), host)
        return original(host, port, family, type, proto, flags)

    setattr(getaddrinfo, _MARK, True)
    getaddrinfo.__doc__ = original.__doc__
    return getaddrinfo


def _patch(socket_module: Any, mapping: dict[str, str]) -> None:
    socket_module.getaddrinfo = wrap_getaddrinfo(socket_module.getaddrinfo, mapping)


def _then_patch(exec_module: Any, mapping: dict[str, str]) -> Any:
    def exec_then_patch(module: Any) -> None:
        exec_module(module)
        _patch(module, mapping)

    return exec_then_patch


class _PatchSocketOnImport:
    """A ``sys.meta_path`` finder that lets the normal finders load ``socket``, then patches it."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "socket":
            return None
        sys.meta_path.remove(self)  # once: the rest of the finders do the finding
        for finder in sys.meta_path:
            spec = getattr(finder, "find_spec", lambda *a: None)(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then_patch(spec.loader.exec_module, self.mapping)
                return spec
        return None


def install(mapping: dict[str, str]) -> None:
    """Make the names in ``mapping`` resolve to their address in this process (now, or when
    ``socket`` is first imported)."""
    mapping = {_normalise(name): address for name, address in mapping.items()}
    if not mapping:
        return
    if "socket" in sys.modules:
        _patch(sys.modules["socket"], mapping)
    else:
        sys.meta_path.insert(0, _PatchSocketOnImport(mapping))


def install_from_environment() -> None:
    """:func:`install` with :data:`ENVIRONMENT_VARIABLE`'s mapping, if it is set."""
    text = os.environ.get(ENVIRONMENT_VARIABLE)
    if text:
        install(parse_mapping(text))


_SHIM_FOLDER: list[str] = []


def child_environment(mapping: dict[str, str]) -> dict[str, str]:
    """The environment variables that install the shim in a child Python process.

    Writes this module as ``sitecustomize.py`` into a private temporary folder (once per process)
    and puts the folder first on ``PYTHONPATH``. Empty ``mapping``: no variables.
    """
    if not mapping:
        return {}
    if not _SHIM_FOLDER:
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="dsqlkit-bench-resolver-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        with open(__file__, encoding="utf-8") as source:
            text = source.read()
        with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as shim:
            shim.write(text + "\n\ninstall_from_environment()\n")
        _SHIM_FOLDER.append(folder)
    path = os.pathsep.join(filter(None, [_SHIM_FOLDER[0], os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, ENVIRONMENT_VARIABLE: format_mapping(mapping)}
