"""Schedule the open-orders sync in celery beat's database, editable in the admin."""

from django.db import migrations

NAME = "execution: sync open orders with KIS's daily inquiry"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": "execution.orders_sync", "interval": every_5s, "queue": "execution",
                  "description": "Fills and ended remainders of open orders from the daily "
                                 "orders inquiry: the check behind the fill notices."},
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("execution", "0006_fill_amount")]

    operations = [migrations.RunPython(create, remove)]
