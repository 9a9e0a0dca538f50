"""The ledger audit (execution.ledger_audit) every 60 s on the execution queue, in celery
beat's database where the admin can see and edit it."""

from django.db import migrations

NAME = "execution: audit reserved quantities against the rows"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME, defaults={"task": "execution.ledger_audit", "interval": every_minute,
                             "queue": "execution",
                             "description": "Recompute every open position's reserved_qty "
                                            "from its intents and orders; alert on drift."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0016_sell_intent_reserves"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
