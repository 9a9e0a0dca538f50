from django.apps import AppConfig


class PicksConfig(AppConfig):
    name = "picks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from execution.notify import summary_part

        from . import notify, signals

        signals.connect()
        # The day's refusals in the close's summary (execution/notify/summary.py).
        summary_part(notify.refusals_of_day)
