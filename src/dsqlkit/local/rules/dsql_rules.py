"""DSQL's rules for the local endpoint: dialect, session rules, per-transaction quotas, OCC, jobs, IAM.

:class:`DsqlRules` is the :class:`~dsqlkit.local.rules.policy.EndpointRules` the server uses when dialect
checks are on: it owns what all sessions share (the catalog version for OC001, the async job
runner, the IAM role mappings) and gives each session a :class:`~dsqlkit.local.rules.session.DsqlSession`.
Example::

    rules = DsqlRules(EndpointConfig())
    await rules.start(backend)
    session = rules.session("admin")
"""

from __future__ import annotations

from typing import Any

from dsqlkit.local.config import EndpointConfig
from dsqlkit.local.rules import dialect, occ, txn_quotas
from dsqlkit.local.rules.iam import IamRoles
from dsqlkit.local.rules.jobs import JobManager
from dsqlkit.local.rules.policy import EndpointRules, SessionPolicy
from dsqlkit.local.rules.session import DsqlSession


class DsqlRules(EndpointRules):
    def __init__(self, config: EndpointConfig) -> None:
        super().__init__(config)
        self.occ = occ.OccState()
        self._jobs: JobManager | None = None
        self._iam: IamRoles | None = None
        # Computed once: every backend session of this endpoint gets the same settings.
        self._backend_parameters = {
            **occ.BACKEND_PARAMETERS,
            **dialect.BACKEND_PARAMETERS,  # DSQL's server version for sys.dsql_version()
        }

    async def start(self, backend: Any) -> None:
        self._jobs = JobManager(backend)
        self._iam = IamRoles(backend)
        await self._jobs.start()
        await self._iam.start()

    async def stop(self) -> None:
        for part in (self._iam, self._jobs):
            if part is not None:
                await part.stop()
        self._jobs = self._iam = None

    def backend_startup_parameters(self) -> dict[str, str]:
        return dict(self._backend_parameters)

    def session(self, user: str) -> SessionPolicy:
        extensions = [part.decide for part in (self._jobs, self._iam) if part is not None]
        return DsqlSession(
            self.config.quotas,
            catalog=self.occ,
            extensions=extensions,
            rewrite=_rewrite_error,
        )

    async def role_allows(self, role: str, arn: str) -> bool:
        if self._iam is None:
            raise RuntimeError("the endpoint's rules are not started")
        return await self._iam.role_allows(role, arn)


def _rewrite_error(fields: dict[str, str]) -> dict[str, str]:
    return txn_quotas.rewrite_error(occ.rewrite_error(fields))


def rules_for(config: EndpointConfig) -> EndpointRules:
    """The rules the server applies: DSQL's unless dialect checks are off (then forward everything)."""
    return DsqlRules(config) if config.dialect_checks else EndpointRules(config)
