from django.db import migrations, models


class Migration(migrations.Migration):
    """A change DSQL refuses: ALTER COLUMN ... TYPE (the tests apply it and expect DSQL's error)."""

    atomic = False
    dependencies = [("djangoapp", "0004_author_name_index")]
    operations = [migrations.AlterField("author", "born", models.BigIntegerField(null=True))]
