"""The hook between the endpoint's protocol relay and DSQL's rules.

The server (``dsqlkit.local.server``) knows the wire protocol and nothing of DSQL's SQL rules; the
rules (dialect, session rules, quotas per transaction, OCC, async jobs, IAM roles) know SQL and
nothing of the wire. They meet here: the server asks a :class:`SessionPolicy` what to do with each
statement and tells it what the backend answered.

How the server carries out a :class:`Decision`:

- ``FORWARD``: the statement goes to the backend unchanged (the hot path: no copy).
- ``REWRITE``: ``sql`` goes to the backend instead; if ``command_tag`` is set, the client sees that
  tag in CommandComplete instead of the backend's.
- ``REFUSE``: the client gets ``error`` and the backend's transaction state follows as if the
  backend had raised it (an explicit transaction becomes aborted; autocommit is untouched). In the
  extended protocol, the rest of the batch up to Sync is discarded, as PostgreSQL does. With
  ``rollback`` (a refused COMMIT), the transaction ends instead: rolled back, the session idle.
- ``wait``: if set, the server awaits it and carries out the :class:`Decision` it returns instead
  (e.g. ``CALL sys.wait_for_job``: wait for the job, then answer with its result); the client's later
  messages wait behind it, in order, and other sessions are not held up.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from dsqlkit.dsql import DsqlError
from dsqlkit.local.config import EndpointConfig


class Action(enum.Enum):
    FORWARD = "forward"
    REWRITE = "rewrite"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Decision:
    action: Action
    sql: str | None = None
    command_tag: str | None = None
    error: DsqlError | None = None
    wait: Awaitable[Decision] | None = None
    rollback: bool = False
    #: For a Parse: what the relay keeps while the backend holds the statement, and hands back
    #: to ``on_bind`` at each later Bind (the statement's classification); its size in bytes.
    keep: object | None = None
    keep_size: int = 0
    #: Names of protocol-level prepared statements the statement drops (SQL ``DEALLOCATE``):
    #: the relay forgets what it keeps of them once the backend has run it.
    forget: tuple[str, ...] = ()

    @staticmethod
    def refuse(error: DsqlError, *, rollback: bool = False) -> Decision:
        return Decision(Action.REFUSE, error=error, rollback=rollback)

    @staticmethod
    def later(wait: Awaitable[Decision]) -> Decision:
        return Decision(Action.FORWARD, wait=wait)

    @staticmethod
    def rewrite(sql: str, command_tag: str | None = None) -> Decision:
        return Decision(Action.REWRITE, sql=sql, command_tag=command_tag)


FORWARD = Decision(Action.FORWARD)


class SessionPolicy:
    """One client session's rules. This base class forwards everything (dialect checks off).

    The server calls, in order of the protocol:
    ``check_startup`` once; then ``on_statement`` for each simple Query and each Parse, and
    ``on_bind`` with a Parse decision's ``keep`` at each Bind of that statement after the first;
    ``on_command_complete``, ``on_notice`` and ``on_ready_for_query`` for the backend's answers
    (``on_notice`` returns True for a notice meant for the rules, which the client never sees);
    ``rewrite_error`` for each backend ErrorResponse (fields by their one-letter protocol code,
    e.g. ``{"S": "ERROR", "C": "40001", "M": "..."}``) before it reaches the client;
    ``close`` when the session ends.
    """

    def check_startup(self, parameters: Mapping[str, str]) -> DsqlError | None:
        return None

    def on_statement(self, sql: str, *, extended: bool) -> Decision:
        return FORWARD

    def on_bind(self, kept: object) -> Decision:
        return FORWARD

    def on_command_complete(self, tag: str) -> None:
        pass

    def on_notice(self, fields: Mapping[str, str]) -> bool:
        return False

    def on_ready_for_query(self, status: str) -> None:
        pass

    def rewrite_error(self, fields: dict[str, str]) -> dict[str, str]:
        return fields

    def close(self) -> None:
        pass


class EndpointRules:
    """The rules shared by all sessions of one endpoint (catalog version, jobs, IAM mappings).

    The server creates one at start with the backend, ``await start()``s it once the backend
    runs, asks it for a :class:`SessionPolicy` per authenticated session, and ``await stop()``s it.
    """

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config

    async def start(self, backend: object) -> None:
        pass

    async def stop(self) -> None:
        pass

    def backend_startup_parameters(self) -> dict[str, str]:
        """Extra parameters the server puts in each backend StartupMessage (GUCs for quotas)."""
        return {}

    def session(self, user: str) -> SessionPolicy:
        return SessionPolicy()

    async def role_allows(self, role: str, arn: str) -> bool:
        """Whether IAM identity ``arn`` may connect as ``role`` (admin: always; else mappings)."""
        return True
