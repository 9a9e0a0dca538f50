"""The market app: what is true of the market and kept in the database (its models, admin and
signals), beside the pure rules and calendar of market/krx.py and market/calendar.py."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MarketConfig(AppConfig):
    name = "market"
    verbose_name = _("Market")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals

        signals.connect()
