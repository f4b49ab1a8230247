"""``dsqlkit token``: the real command in a subprocess; only the token on stdout."""

from __future__ import annotations

import os
import subprocess
import sys

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import Credential, verify_token

CID = "abcdefghijklmnopqrstuvwxyz"
HOST = f"{CID}.dsql.us-east-1.on.aws"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "dsqlkit", "token", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


CREDS = {"AWS_ACCESS_KEY_ID": "AKIDCLI", "AWS_SECRET_ACCESS_KEY": "cli-secret"}


def test_prints_only_a_token_that_verifies():
    result = run(
        "--host", CID, "--region", "us-east-1", "--user", "app", "--expires", "120", **CREDS
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.removesuffix("\n")
    assert "\n" not in token and "X-Amz-Expires=120&" in token
    known = {"AKIDCLI": Credential("AKIDCLI", "cli-secret")}
    verified = verify_token(
        token, host=HOST, region="us-east-1", user="app", lookup_secret=known.get
    )
    assert verified.action == spec.ACTION_USER


def test_bad_input_exit_2_with_message_on_stderr():
    result = run("--host", "localhost", **CREDS)
    assert result.returncode == 2 and result.stdout == ""
    assert "missing region for host 'localhost'" in result.stderr
    result = run("--host", HOST, "--expires", "0", **CREDS)
    assert result.returncode == 2 and "token_duration_secs" in result.stderr


def test_no_credentials_exit_2_without_traceback():
    result = run("--host", HOST)
    assert result.returncode == 2 and result.stdout == ""
    assert "No AWS credentials" in result.stderr and "Traceback" not in result.stderr
