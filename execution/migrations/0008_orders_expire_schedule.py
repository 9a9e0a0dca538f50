"""Schedule the expiry of unfilled limit orders in celery beat's database, editable in the admin."""

from django.db import migrations

NAME = "execution: cancel limit orders unfilled past the timeout"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": "execution.orders_expire", "interval": every_5s, "queue": "execution",
                  "description": "Cancel limit orders unfilled after "
                                 "AEGIS_LIMIT_ORDER_TIMEOUT_S; the inquiry confirms."},
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("execution", "0007_orders_sync_schedule")]

    operations = [migrations.RunPython(create, remove)]
