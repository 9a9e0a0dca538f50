"""BestPrice and SpecialDay now belong to the market app (market's 0001_initial, which this
follows): dropped from trading's state only, their tables left as they are. Their content types
follow them, so that permissions granted on them and the admin's history of their rows stay."""

from django.db import migrations

MOVED = ("bestprice", "specialday")


def content_types_move(from_app: str, to_app: str):
    def move(apps, schema_editor):
        content_type = apps.get_model("contenttypes", "ContentType")
        rows = content_type.objects.using(schema_editor.connection.alias)
        for model in MOVED:
            if not rows.filter(app_label=to_app, model=model).exists():
                rows.filter(app_label=from_app, model=model).update(app_label=to_app)

    return move


class Migration(migrations.Migration):

    dependencies = [
        ('trading', '0008_calendar_check_schedule'),
        ('market', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='BestPrice'),
                migrations.DeleteModel(name='SpecialDay'),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            content_types_move("trading", "market"), content_types_move("market", "trading")
        ),
    ]
