"""DSQL's rules for the local endpoint: dialect, session rules, per-transaction quotas, OCC, jobs, IAM.

:class:`DsqlRules` is the :class:`~dsqlkit.local.policy.EndpointRules` the server uses when dialect
checks are on: it owns what all sessions share and gives each session a
:class:`~dsqlkit.local.session.DsqlSession`. Example::

    rules = DsqlRules(EndpointConfig())
    session = rules.session("admin")
"""

from __future__ import annotations

from dsqlkit.local.config import EndpointConfig
from dsqlkit.local.policy import EndpointRules, SessionPolicy
from dsqlkit.local.session import DsqlSession


class DsqlRules(EndpointRules):
    def __init__(self, config: EndpointConfig) -> None:
        super().__init__(config)

    def session(self, user: str) -> SessionPolicy:
        return DsqlSession(self.config.quotas)
