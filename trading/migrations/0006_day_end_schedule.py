"""The end of each trading day, scheduled in celery beat's database (every 10 s on the trading
queue), where the admin can see and edit it: after a day's close its day orders end in the
ledger, and the next trading waits for a reconciliation (execution/services/day_end.py)."""

from django.db import migrations

NAME = "trading: end the day's orders after the close"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={
        "task": "trading.day_end", "interval": every, "queue": "trading",
        "description": "After each trading day's close: its open day orders are synced with "
                       "KIS, then ended in the ledger (remainders released); orders never sent "
                       "are withdrawn; the startup gate waits for the next reconciliation."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0005_exit_profile_opening_auction_stop"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
