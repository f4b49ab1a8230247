"""ENGINE ``dsqlkit.django`` (aurora-dsql-django's backend, dsqlkit's connect) on the local endpoint.

Django allows one configuration per process and the ecosystem suite configures its own, so the
scenario runs in a fresh interpreter: settings as the official adapter documents them (host,
user, region in OPTIONS; TLS from the endpoint's exported ``PGSSLROOTCERT``), a model with an
index created by the official schema editor, a row written and read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
import django
from django.conf import settings
from django.db import connection, connections, models

host, port = sys.argv[1], sys.argv[2]
settings.configure(
    DATABASES={"default": {
        "ENGINE": "dsqlkit.django", "NAME": "postgres", "USER": "admin",
        "HOST": host, "PORT": port, "OPTIONS": {"sslmode": "verify-full"},
    }},
    INSTALLED_APPS=[], USE_TZ=True,
)
django.setup()


class Note(models.Model):
    text = models.TextField(db_index=True)

    class Meta:
        app_label = "adapters"
        db_table = "adapter_notes"


with connection.schema_editor(collect_sql=False) as editor:
    editor.create_model(Note)
    created = [str(s) for s in editor.deferred_sql]
note = Note.objects.create(text="hello")
with connection.cursor() as cursor:
    cursor.execute("SHOW application_name")
    name = cursor.fetchone()[0]
print(json.dumps({
    "vendor": connection.vendor,
    "wrapper": type(connections["default"]).__module__,
    "application_name": name,
    "index_sql": created,
    "read_back": Note.objects.get(pk=note.pk).text,
    "pk_type": type(note.pk).__name__,
}))
"""


def test_django_engine_on_the_official_adapter(dsql_clean_database, dsql_environ):
    env = {**os.environ, **dsql_environ}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, dsql_clean_database.host, str(dsql_clean_database.port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["wrapper"] == "dsqlkit.django.base" and result["vendor"] == "dsql"
    assert result["application_name"].startswith("django:dsqlkit-psycopg/")
    assert any(s.startswith("CREATE INDEX ASYNC") for s in result["index_sql"]), result
    assert result["read_back"] == "hello" and result["pk_type"] == "UUID"
