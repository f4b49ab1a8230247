"""``dsqlkit token``: print an IAM auth token, for psql and other tools.

Only the token goes to stdout, so that it can be captured::

    PGPASSWORD=$(dsqlkit token --host abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws) \\
        psql "host=abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws user=admin sslmode=verify-full"

Errors go to stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from dsqlkit import dsql as spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dsqlkit token`` options to ``parser``."""
    parser.add_argument(
        "--host", required=True, help="cluster host name, or a 26-character cluster id"
    )
    parser.add_argument(
        "--region", help="AWS region (default: from the host name, then AWS_REGION)"
    )
    parser.add_argument(
        "--user", default=spec.ADMIN_USER, help="database role (default: %(default)s)"
    )
    parser.add_argument(
        "--expires",
        default=spec.TOKEN_DEFAULT_EXPIRES,
        help=f"validity in seconds, 1..{spec.TOKEN_MAX_EXPIRES} (default: %(default)s)",
    )
    parser.add_argument("--profile", help="AWS profile for the credentials (default: environment)")


def run(args: argparse.Namespace) -> int:
    """Print one token for ``args``; return 0, or 2 with a message on stderr."""
    from dsqlkit.auth.credentials import CredentialsNotFound
    from dsqlkit.auth.tokens import TokenFactory
    from dsqlkit.config import resolve_params

    try:
        params = resolve_params(
            host=args.host,
            region=args.region,
            user=args.user,
            token_duration_secs=args.expires,
            profile=args.profile,
        )
        token = TokenFactory(params).token()
    except (ValueError, CredentialsNotFound) as exc:
        print(f"dsqlkit token: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # botocore errors (SSO expired, IMDS unreachable, ...): no traceback
        print(f"dsqlkit token: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
