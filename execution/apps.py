from django.apps import AppConfig


class ExecutionConfig(AppConfig):
    name = "execution"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from aegis.rows import prepares_only_direct

        # The hot statements are prepared on a direct connection only (aegis/rows.py).
        connection_created.connect(prepares_only_direct,
                                   dispatch_uid="aegis.rows.prepares_only_direct")
