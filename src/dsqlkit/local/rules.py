"""DSQL's rules for the local endpoint: dialect, session rules, per-transaction quotas, OCC, jobs, IAM.

(Being built: for now it forwards everything.)
"""

from __future__ import annotations

from dsqlkit.local.policy import EndpointRules


class DsqlRules(EndpointRules):
    pass
