"""The daily check of the market calendar against KIS's holiday inquiry, scheduled in celery
beat's database at 07:30 Seoul on the trading queue (KIS asks for one call a day)."""

from django.db import migrations

NAME = "trading: check the market calendar against KIS"


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    daily, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="7", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone="Asia/Seoul")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={
        "task": "trading.calendar_check", "crontab": daily, "queue": "trading",
        "description": "Compare the next two weeks of the market calendar with KIS's holiday "
                       "inquiry (opnd_yn); alert each day they disagree. Correct the calendar "
                       "with a special day in the admin."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0007_special_day"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
