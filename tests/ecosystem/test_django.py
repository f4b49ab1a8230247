"""Django on ``dsqlkit local``, the way an application uses it: migrate, CRUD, atomic(), bulk_create.

Django's own ``django.db.backends.postgresql`` backend (psycopg 3), configured in-process with
``settings.configure``: the password is a token from dsqlkit's :class:`TokenFactory` and TLS is
verify-full against the endpoint's CA. The app (``tests.ecosystem.djangoapp``) has UUID primary
keys and non-atomic migrations with one DDL each, as DSQL requires. Everything runs against the
shared endpoint with DSQL's default quotas.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from django.conf import settings

from dsqlkit import dsql as spec
from dsqlkit.auth.tokens import TokenFactory
from dsqlkit.config import resolve_params
from dsqlkit.local import LocalEndpoint
from dsqlkit.retry import OCCRetryConfig, run_with_occ_retry, sqlstate

APP = "djangoapp"
APPLIED = "0004_author_name_index"  # the last migration DSQL accepts; 0005 changes a column type


def configure(endpoint: LocalEndpoint) -> None:
    """Django settings for the endpoint (once per process: Django allows one configuration)."""
    kwargs = endpoint.connect_kwargs()
    token = TokenFactory(resolve_params(**kwargs)).token()
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": spec.DATABASE,
        "USER": spec.ADMIN_USER,
        "PASSWORD": token,
        "HOST": kwargs["host"],
        "PORT": str(kwargs["port"]),
        "OPTIONS": {"sslmode": "verify-full", "sslrootcert": kwargs["sslrootcert"]},
        "CONN_MAX_AGE": 0,
    }
    if settings.configured:  # another suite configured Django first: point ours at the endpoint
        settings.DATABASES["default"].update(database)
        return
    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=["tests.ecosystem.djangoapp"],
        DEFAULT_AUTO_FIELD="tests.ecosystem.djangoapp.fields.CachedIdentityField",
        USE_TZ=True,
        TIME_ZONE="UTC",
    )
    django.setup()


@pytest.fixture(scope="module")
def migrated(dsql_endpoint: LocalEndpoint) -> Iterator[list[str]]:
    """``migrate djangoapp 0004`` on an empty schema; the migrations Django recorded."""
    from django.core.management import call_command
    from django.db import connection, connections
    from django.db.migrations.recorder import MigrationRecorder

    dsql_endpoint.reset()
    with dsql_endpoint.use_environment():
        configure(dsql_endpoint)
        call_command("migrate", APP, APPLIED, verbosity=0)
        recorded = sorted(
            MigrationRecorder(connection)
            .migration_qs.filter(app=APP)
            .values_list("name", flat=True)
        )
        yield recorded
        connections.close_all()


def cause(error: BaseException) -> Any:
    """The driver's error under Django's wrapper."""
    assert error.__cause__ is not None, error
    return error.__cause__


def test_migrate_applies_every_step(migrated: list[str], dsql_endpoint: LocalEndpoint) -> None:
    from django.db import connection

    assert migrated == [
        "0001_initial",
        "0002_counter",
        "0003_author_nickname",
        "0004_author_name_index",
    ]
    with connection.cursor() as cur:
        columns = [
            c.name for c in connection.introspection.get_table_description(cur, "djangoapp_author")
        ]
        assert columns == ["id", "name", "born", "nickname"]
        cur.execute(
            "SELECT job_id FROM sys.jobs WHERE job_type = 'INDEX_BUILD' AND object_name = %s",
            ["author_name_idx"],
        )
        (job_id,) = cur.fetchone()
        assert spec.JOB_ID.match(job_id)
        cur.execute(f"CALL sys.wait_for_job('{job_id}')")
        assert cur.fetchone() == (True,)
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'djangoapp_author'")
        assert "author_name_idx" in {row[0] for row in cur.fetchall()}
        cur.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name ="
            " 'djangoapp_author' AND column_name = 'id'"
        )
        assert cur.fetchone() == ("uuid",)


def test_crud(migrated: list[str]) -> None:
    from tests.ecosystem.djangoapp.models import Author

    ada = Author.objects.create(name="Ada", born=1815)
    assert isinstance(ada.pk, uuid.UUID)
    Author.objects.create(name="Grace", born=1906)
    assert Author.objects.get(pk=ada.pk).born == 1815
    assert list(Author.objects.filter(born__lt=1900).values_list("name", flat=True)) == ["Ada"]
    assert Author.objects.filter(name="Grace").update(nickname="Amazing Grace") == 1
    assert Author.objects.get(name="Grace").nickname == "Amazing Grace"
    ada.delete()
    assert not Author.objects.filter(pk=ada.pk).exists()
    assert Author.objects.filter(name__in=["Ada", "Grace"]).count() == 1
    Author.objects.filter(name="Grace").delete()


def test_atomic_block_retried_on_occ_conflict(
    migrated: list[str], dsql_endpoint: LocalEndpoint
) -> None:
    from django.db import transaction

    from tests.ecosystem.djangoapp.models import Counter

    counter = Counter.objects.create(value=0)
    seen: list[int] = []

    def increment() -> None:
        with transaction.atomic():
            current = Counter.objects.get(pk=counter.pk)  # the transaction's snapshot
            seen.append(current.value)
            if len(seen) == 1:  # another client commits a change to the row meanwhile
                with psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as other:
                    other.execute(
                        "UPDATE djangoapp_counter SET value = value + 100 WHERE id = %s",
                        (counter.pk,),
                    )
            current.value += 1
            current.save(update_fields=["value"])

    run_with_occ_retry(increment, OCCRetryConfig(max_retries=3))
    assert seen == [0, 100]  # the first attempt lost (OC000), the retry saw the other's commit
    assert Counter.objects.get(pk=counter.pk).value == 101


def test_bulk_create_within_the_row_quota(migrated: list[str]) -> None:
    from django.db import OperationalError

    from tests.ecosystem.djangoapp.models import Author

    before = Author.objects.count()
    created = Author.objects.bulk_create(
        [Author(name=f"bulk{i}") for i in range(spec.TRANSACTION_MAX_ROWS)]
    )
    assert len(created) == spec.TRANSACTION_MAX_ROWS
    assert Author.objects.count() == before + spec.TRANSACTION_MAX_ROWS
    with pytest.raises(OperationalError) as caught:
        Author.objects.bulk_create(
            [Author(name=f"over{i}") for i in range(spec.TRANSACTION_MAX_ROWS + 1)]
        )
    error = cause(caught.value)
    assert (error.sqlstate, error.diag.message_primary) == (
        spec.TRANSACTION_ROWS_EXCEEDED.sqlstate,
        spec.TRANSACTION_ROWS_EXCEEDED.message,
    )
    assert Author.objects.count() == before + spec.TRANSACTION_MAX_ROWS  # nothing of it kept
    Author.objects.filter(name__startswith="bulk").delete()


def test_column_type_change_is_refused_with_dsql_error(migrated: list[str]) -> None:
    from django.core.management import call_command
    from django.db import NotSupportedError, connection
    from django.db.migrations.recorder import MigrationRecorder

    with pytest.raises(NotSupportedError) as caught:
        call_command("migrate", APP, "0005", verbosity=0)
    refused = spec.DIALECT_REFUSALS["alter_column_type"]
    error = cause(caught.value)
    assert (sqlstate(error), error.diag.message_primary) == (refused.sqlstate, refused.message)
    recorded = MigrationRecorder(connection).migration_qs.filter(app=APP, name__startswith="0005")
    assert not recorded.exists()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'djangoapp_author' AND column_name = 'born'"
        )
        assert cur.fetchone() == ("integer",)


def test_what_django_own_schema_editor_does_that_dsql_refuses(migrated: list[str]) -> None:
    """Why the official adapter exists: a synchronous index, and two DDL in one atomic block."""
    from django.db import NotSupportedError, connection, models

    from tests.ecosystem.djangoapp.models import Author

    with pytest.raises(NotSupportedError) as caught, connection.schema_editor() as editor:
        editor.add_index(Author, models.Index(fields=["born"], name="author_born_idx"))
    refused = spec.DIALECT_REFUSALS["sync_index"]
    assert cause(caught.value).diag.message_primary == refused.message

    with (
        pytest.raises(NotSupportedError) as caught,
        connection.schema_editor(atomic=True) as editor,
    ):
        editor.add_field(Author, _field("first_extra"))
        editor.add_field(Author, _field("second_extra"))
    assert cause(caught.value).diag.message_primary == spec.MULTIPLE_DDL.message
    with connection.cursor() as cur:
        columns = [
            c.name for c in connection.introspection.get_table_description(cur, "djangoapp_author")
        ]
    assert "first_extra" not in columns  # the whole block rolled back


def _field(name: str) -> Any:
    from django.db import models

    field = models.IntegerField(null=True)
    field.set_attributes_from_name(name)
    return field
