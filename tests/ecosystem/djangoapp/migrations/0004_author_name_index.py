from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("djangoapp", "0003_author_nickname")]
    # DSQL builds indexes asynchronously: CREATE INDEX ASYNC answers a job id at once.
    operations = [
        migrations.RunSQL(
            "CREATE INDEX ASYNC author_name_idx ON djangoapp_author (name)",
            reverse_sql="DROP INDEX author_name_idx",
        ),
    ]
