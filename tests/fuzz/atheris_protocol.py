"""Coverage-guided fuzzing of the protocol core with atheris (not run in CI: run it by hand).

Drives the same state sequence as ``test_protocol_fuzz.test_client_session_states``; any
exception other than ``ProtocolError`` is a crash that atheris reports with its input. Run::

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_protocol.py -max_total_time=300
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from dsqlkit.local.wire import protocol as pg
    from dsqlkit.local.wire.session import CLIENT_INSPECT


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    reader = pg.MessageReader(frozenset({ord("p")}), startup=True)
    try:
        while fdp.remaining_bytes():
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 512))
            for kind, frame in reader.feed(chunk):
                if kind == pg.STARTUP:
                    if isinstance(pg.parse_startup_packet(frame[4:]), pg.StartupMessage):
                        reader.startup = False
                elif kind == ord("p"):
                    pg.parse_password(frame[5:])
                    reader.inspect = CLIENT_INSPECT
                elif kind == ord("P"):
                    pg.parse_parse(frame[5:])
                elif kind == ord("B"):
                    pg.parse_bind_names(frame[5:])
                elif kind in (ord("Q"), ord("E")):
                    pg.parse_query(frame[5:])
    except pg.ProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
