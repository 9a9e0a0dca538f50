"""The execution safety nets, scheduled in celery beat's database, where the admin can see and
edit them. Each runs every 5 s on the execution queue.
"""

from django.db import migrations

TASKS = [
    ("execution: sweep NEW intents and orders in flight", "execution.sweep",
     "Re-enqueue NEW intents older than 3 s; settle orders in flight. The safety net, not the "
     "main path."),
    ("execution: sync open orders with KIS's daily inquiry", "execution.orders_sync",
     "Fills and ended remainders of open orders from the daily orders inquiry: the check "
     "behind the fill notices."),
    ("execution: cancel limit orders unfilled past the timeout", "execution.orders_expire",
     "Cancel limit orders unfilled after AEGIS_LIMIT_ORDER_TIMEOUT_S; the inquiry confirms."),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5s, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    for name, task, description in TASKS:
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": every_5s, "queue": "execution",
                                 "description": description})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[name for name, _, _ in TASKS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0004_order_send_started_at"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
