"""The pre-TLS negotiation machine (``dsqlkit.local.wire.negotiation``), fed like the server feeds it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dsqlkit import dsql as spec
from dsqlkit.local.wire import protocol as pg
from dsqlkit.local.wire.negotiation import MAX_HELD, Negotiation, Outcome, Step

TLS_HELLO = bytes([pg.TLS_HANDSHAKE_RECORD, 3, 1, 0, 5])


def drive(arrived: bytes, negotiation: Negotiation | None = None) -> tuple[Step, list[bytes], int]:
    """Run the machine over bytes already in the socket; (final step, replies, reads made).

    When it wants more than has arrived the client is silent: the last step is CONTINUE.
    """
    negotiation = negotiation or Negotiation()
    pending, replies, reads = arrived, [], 0
    while True:
        read = negotiation.next_read()
        reads += 1
        data = pending[: read.size]
        if not read.peek:
            pending = pending[len(data) :]
        if read.wait and not data:
            return Step(Outcome.CONTINUE), replies, reads  # would wait for readability
        step = negotiation.receive(data)
        if step.reply:
            replies.append(step.reply)
        if step.outcome is not Outcome.CONTINUE:
            return step, replies, reads


def test_sslrequest_then_tls() -> None:
    step, replies, _ = drive(pg.ssl_request())
    assert (step.outcome, step.direct, replies) == (Outcome.TLS, False, [b"S"])


def test_direct_tls_is_only_peeked() -> None:
    negotiation = Negotiation()
    assert negotiation.next_read().peek
    step = negotiation.receive(TLS_HELLO[:1])
    assert (step.outcome, step.direct) == (Outcome.TLS, True)


def test_one_gssenc_then_ssl_or_direct_tls() -> None:
    step, replies, _ = drive(pg.gssenc_request() + pg.ssl_request())
    assert (step.outcome, replies) == (Outcome.TLS, [b"N", b"S"])
    step, replies, _ = drive(pg.gssenc_request() + TLS_HELLO)
    assert (step.outcome, step.direct, replies) == (Outcome.TLS, True, [b"N"])


def test_second_gssenc_is_refused() -> None:
    step, replies, _ = drive(pg.gssenc_request() * 2 + pg.ssl_request())
    assert (step.outcome, step.reason) == (Outcome.REFUSE, "gssenc_repeated")
    assert replies == [b"N", pg.error_response(spec.GSSENC_REPEATED)]


def test_bytes_after_sslrequest_are_refused_without_an_answer() -> None:
    step, replies, _ = drive(pg.ssl_request() + pg.startup_message({"user": "admin"}))
    assert (step.outcome, step.reason, replies) == (Outcome.REFUSE, "data_after_sslrequest", [])


def test_plaintext_startup_is_refused() -> None:
    step, replies, _ = drive(pg.startup_message({"user": "admin", "database": "postgres"}))
    assert (step.outcome, step.reason) == (Outcome.REFUSE, "plaintext")
    assert replies == [pg.error_response(spec.SSL_MANDATORY)]


def test_cancel_request() -> None:
    step, replies, _ = drive(pg.cancel_request(1234, b"\x01\x02\x03\x04"))
    assert step.outcome is Outcome.CANCEL and not replies
    assert step.cancel == pg.CancelRequest(1234, b"\x01\x02\x03\x04")


def test_eof_closes_quietly() -> None:
    step, _, _ = drive(pg.ssl_request()[:3])
    assert step.outcome is Outcome.CONTINUE  # still waiting: not yet EOF
    negotiation = Negotiation()
    assert negotiation.receive(b"").reason == "closed"


def test_a_partial_header_is_consumed_then_waits() -> None:
    """Seven bytes and silence: every read consumes or waits, none sees the same bytes twice."""
    negotiation = Negotiation()
    step, _, reads = drive(pg.ssl_request()[:7], negotiation)
    assert step.outcome is Outcome.CONTINUE
    assert reads == 3  # the peek, the 7 bytes, then a read that must wait
    assert negotiation.next_read().size == 1  # only the missing byte is asked for
    step, replies, _ = drive(pg.ssl_request()[7:], negotiation)
    assert (step.outcome, replies) == (Outcome.TLS, [b"S"])


@settings(max_examples=300, deadline=None)
@given(stream=st.binary(max_size=64), prefix=st.sampled_from([b"", pg.gssenc_request()]))
def test_any_bytes_end_in_bounded_reads(stream: bytes, prefix: bytes) -> None:
    _, replies, reads = drive(prefix + stream)
    # At most: two requests of peek + header (+ cancel body + pending check).
    assert reads <= 2 * 3 + 2
    assert len(replies) <= 2 and all(len(r) < 200 for r in replies)


@settings(max_examples=200, deadline=None)
@given(stream=st.binary(max_size=40))
def test_trickled_bytes_hold_at_most_max_held(stream: bytes) -> None:
    """One byte at a time: each read asks for at most what fits in MAX_HELD, never more."""
    negotiation = Negotiation()
    for i in range(len(stream) + 1):
        read = negotiation.next_read()
        assert read.size <= MAX_HELD
        data = stream[i : i + 1] if read.wait or i < len(stream) else b""
        if read.peek and read.wait and data:
            step = negotiation.receive(data)  # peeked: the same byte comes again
            if step.outcome is not Outcome.CONTINUE:
                return
            read = negotiation.next_read()
        step = negotiation.receive(data)
        if step.outcome is not Outcome.CONTINUE:
            return
