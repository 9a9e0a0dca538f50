"""The picks orphan sweep, scheduled in celery beat's database (every 60 s on the picks queue),
where the admin can see and edit it."""

from django.db import migrations

NAME = "picks: route orphans (picks still NEW after a few seconds)"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={
        "task": "picks.sweep", "interval": every_minute, "queue": "picks",
        "description": "Route picks whose route task never ran (the broker was down at ingest). "
                       "The safety net; picks are routed on ingest."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("picks", "0002_sources_gates"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
