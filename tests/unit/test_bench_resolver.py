"""The benchmark's resolver shim: a DSQL-style name answered with a local address, in the child
processes only. Real ``socket.getaddrinfo``, real child interpreters (no mocks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from dsqlkit.bench import resolver

NAME = "shimtestaaaaaaaaaaaaaaaaaa.dsql.us-east-1.on.aws"


def test_parse_mapping_normalises_names_and_round_trips() -> None:
    mapping = resolver.parse_mapping(f" {NAME.upper()}. = 127.0.0.1 ,b.example=::1,")
    assert mapping == {NAME: "127.0.0.1", "b.example": "::1"}
    assert resolver.parse_mapping(resolver.format_mapping(mapping)) == mapping
    assert resolver.parse_mapping("") == {}


@pytest.mark.parametrize("text", ["no-equals", "=127.0.0.1", "name="])
def test_parse_mapping_says_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match="name=address"):
        resolver.parse_mapping(text)


def test_wrapped_getaddrinfo_answers_only_the_listed_names() -> None:
    wrapped = resolver.wrap_getaddrinfo(socket.getaddrinfo, {NAME: "127.0.0.1"})
    addresses = {info[4][0] for info in wrapped(NAME, 5432, type=socket.SOCK_STREAM)}
    assert addresses == {"127.0.0.1"}
    assert {info[4][0] for info in wrapped(NAME.encode() + b".", 5432)} == {"127.0.0.1"}
    with pytest.raises(socket.gaierror):  # an unlisted name still goes to the real resolver
        wrapped("not-" + NAME, 5432)
    assert wrapped("127.0.0.2", 1) == socket.getaddrinfo("127.0.0.2", 1)
    assert resolver.wrap_getaddrinfo(wrapped, {"other": "::1"}) is wrapped  # never wrapped twice


_CHILD = f"""
import sys
preloaded = "socket" in sys.modules
import asyncio, json, socket
async def via_loop():
    infos = await asyncio.get_running_loop().getaddrinfo("{NAME.upper()}", 5432)
    return sorted({{i[4][0] for i in infos}})
try:
    socket.getaddrinfo("not-{NAME}", 5432)
    other = "resolved"
except socket.gaierror:
    other = "unknown"
print(json.dumps({{
    "preloaded": preloaded,
    "socket": sorted({{i[4][0] for i in socket.getaddrinfo("{NAME}", 5432)}}),
    "loop": asyncio.run(via_loop()),
    "other": other,
}}))
"""


def _run_child(environ: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 or "gaierror" in done.stderr, done.stderr
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}


def test_child_process_resolves_the_name_through_socket_and_asyncio() -> None:
    environ = {**os.environ, **resolver.child_environment({NAME: "127.0.0.1"})}
    assert environ[resolver.ENVIRONMENT_VARIABLE] == f"{NAME}=127.0.0.1"
    answer = _run_child(environ)
    # The shim does not import socket itself (that would move socket's cost out of timed imports).
    assert answer == {
        "preloaded": False,
        "socket": ["127.0.0.1"],
        "loop": ["127.0.0.1"],
        "other": "unknown",
    }


def test_without_the_shim_the_name_does_not_resolve() -> None:
    environ = {k: v for k, v in os.environ.items() if k != resolver.ENVIRONMENT_VARIABLE}
    assert "error" in _run_child(environ)
    assert resolver.child_environment({}) == {}
