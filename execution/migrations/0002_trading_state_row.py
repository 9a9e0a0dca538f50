from django.db import migrations


def create_row(apps, schema_editor):
    TradingState = apps.get_model("execution", "TradingState")
    TradingState.objects.get_or_create(pk=1, defaults={"state": "ACTIVE", "reason": "initial"})


class Migration(migrations.Migration):
    dependencies = [("execution", "0001_initial")]

    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
