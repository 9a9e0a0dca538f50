from django.apps import AppConfig


class PicksConfig(AppConfig):
    name = "picks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals

        signals.connect()
