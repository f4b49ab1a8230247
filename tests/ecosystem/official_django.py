"""The Django scenario on ENGINE ``dsqlkit.django`` (aurora-dsql-django's backend on dsqlkit's
connect), run in its own interpreter by ``test_django_official.py``: Django allows one
configuration per process and ``test_django.py`` configures Django's own backend.

Usage: ``python -m tests.ecosystem.official_django HOST PORT``; prints one JSON line of results.
Credentials and the CA come from the environment (``LocalEndpoint.environ()``).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(host: str, port: str) -> dict[str, Any]:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "dsqlkit.django",
                "NAME": "postgres",
                "USER": "admin",
                "HOST": host,
                "PORT": port,
                "OPTIONS": {"sslmode": "verify-full"},
            }
        },
        INSTALLED_APPS=["tests.ecosystem.djangoapp"],
        USE_TZ=True,
    )
    django.setup()

    from django.core.management import call_command
    from django.db import NotSupportedError, connection, transaction
    from django.db.migrations.recorder import MigrationRecorder

    from dsqlkit.retry import OCCRetryConfig, run_with_occ_retry
    from tests.ecosystem.djangoapp.models import Author, Counter

    call_command("migrate", "djangoapp", "0004", verbosity=0)
    recorded = sorted(
        MigrationRecorder(connection)
        .migration_qs.filter(app="djangoapp")
        .values_list("name", flat=True)
    )
    Author.objects.bulk_create([Author(name=f"a{i}", born=1900 + i) for i in range(50)])
    Author.objects.filter(born__gte=1940).update(nickname="late")
    counter = Counter.objects.create(value=0)
    attempts = []

    def increment() -> None:
        with transaction.atomic():
            row = Counter.objects.select_for_update().get(pk=counter.pk)
            attempts.append(row.value)
            row.value += 1
            row.save(update_fields=["value"])

    run_with_occ_retry(increment, OCCRetryConfig())
    refused = ""
    try:
        call_command("migrate", "djangoapp", "0005", verbosity=0)
    except NotSupportedError as error:
        refused = str(error.__cause__.diag.message_primary)  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute("SHOW application_name")
        application_name = cursor.fetchone()[0]
    return {
        "vendor": connection.vendor,
        "recorded": recorded,
        "authors": Author.objects.count(),
        "late": Author.objects.filter(nickname="late").count(),
        "counter": Counter.objects.get(pk=counter.pk).value,
        "attempts": attempts,
        "refused": refused,
        "application_name": application_name,
        "migrations_pk": MigrationRecorder.Migration._meta.pk.db_type(connection),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
