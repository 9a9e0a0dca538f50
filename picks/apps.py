from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PicksConfig(AppConfig):
    name = "picks"
    verbose_name = _("Picks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from execution.notify import summary_part

        from . import notify, signals

        signals.connect()
        # The day's refusals in the close's summary (execution/notify/summary.py).
        summary_part(notify.refusals_of_day)
