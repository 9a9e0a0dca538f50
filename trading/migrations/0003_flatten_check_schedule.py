"""The emergency-flatten policy's check, scheduled in celery beat's database (every 15 s on the
trading queue), where the admin can see and edit it. The policy itself is off until enabled."""

from django.db import migrations

NAME = "trading: emergency-flatten policy check"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=15, period="seconds")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={
        "task": "trading.flatten_check", "interval": every, "queue": "trading",
        "description": "Apply the flatten policy (execution: Flatten policy in the admin): KIS "
                       "down for N minutes, or every held price stale."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0002_cadence_window"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
