from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("djangoapp", "0002_counter")]
    operations = [
        migrations.AddField("author", "nickname", models.CharField(max_length=50, null=True)),
    ]
