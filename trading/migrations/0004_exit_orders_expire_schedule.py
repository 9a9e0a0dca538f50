"""The exit engine's re-pricing, scheduled in celery beat's database (every 5 s on the trading
queue), where the admin can see and edit it: its own exits still unfilled after
AEGIS_EXIT_ORDER_TIMEOUT_S of continuous trading are cancelled and decided again."""

from django.db import migrations

NAME = "trading: re-price the engine's unfilled exits"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={
        "task": "trading.exit_orders_expire", "interval": every, "queue": "trading",
        "description": "Cancel stop-loss, trailing, time and max-holding exits still unfilled "
                       "after AEGIS_EXIT_ORDER_TIMEOUT_S of continuous trading; the engine "
                       "decides them again at the current price."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0003_flatten_check_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
