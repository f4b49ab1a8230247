import uuid

from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("djangoapp", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="Counter",
            fields=[
                ("id", models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)),
                ("value", models.IntegerField()),
            ],
        ),
    ]
