"""Schedule the execution sweep in celery beat's database, where the admin can see and edit it."""

from django.db import migrations

NAME = "execution: sweep NEW intents and orders in flight"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": "execution.sweep", "interval": every_5s, "queue": "execution",
                  "description": "Re-enqueue NEW intents older than 3 s; settle orders in "
                                 "flight. The safety net, not the main path."},
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0004_order_send_started_at"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
