"""DSQL's rules for the local endpoint: the policy interface the wire layer asks, the dialect, the
session and transaction rules, OCC, quotas, asynchronous jobs, IAM role mappings and the linter."""
