from django.apps import AppConfig


class PicksConfig(AppConfig):
    name = "picks"
    default_auto_field = "django.db.models.BigAutoField"
