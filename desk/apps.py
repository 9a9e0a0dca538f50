from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DeskConfig(AppConfig):
    name = "desk"
    verbose_name = _("Desk")

    def ready(self) -> None:
        # The admin's titles, in the person's language: the desk owns the admin's look.
        from django.contrib import admin

        admin.site.site_header = "Aegis"
        admin.site.site_title = "Aegis"
        admin.site.index_title = _("Positions, exits and orders")
