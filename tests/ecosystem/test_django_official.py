"""The Django app of ``test_django.py`` on ENGINE ``dsqlkit.django`` (the official adapter's schema
editor and UUID auto fields, dsqlkit's connect), in a fresh interpreter (``official_django.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dsqlkit import dsql as spec

ROOT = Path(__file__).resolve().parents[2]


def test_migrate_crud_and_refusals_on_the_official_adapter(
    dsql_clean_database: Any, dsql_environ: dict[str, str]
) -> None:
    ep = dsql_clean_database
    run = subprocess.run(
        [sys.executable, "-m", "tests.ecosystem.official_django", ep.host, str(ep.port)],
        cwd=ROOT,
        env={**os.environ, **dsql_environ},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["vendor"] == "dsql"
    assert result["application_name"].startswith("django:dsqlkit-psycopg/")
    assert result["recorded"] == [
        "0001_initial",
        "0002_counter",
        "0003_author_nickname",
        "0004_author_name_index",
    ]
    assert result["migrations_pk"] == "uuid"  # the adapter's auto field: no identity needed
    assert (result["authors"], result["late"]) == (50, 10)
    assert (result["counter"], result["attempts"]) == (1, [0])
    assert result["refused"] == spec.DIALECT_REFUSALS["alter_column_type"].message
