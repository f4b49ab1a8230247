import uuid

from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # DSQL: one DDL per transaction, and never DDL with DML (the recorder's INSERT)
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="Author",
            fields=[
                ("id", models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)),
                ("name", models.CharField(max_length=100)),
                ("born", models.IntegerField(null=True)),
            ],
        ),
    ]
