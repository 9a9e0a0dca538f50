from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _

from core import metrics
from core.rows import prepares_only_direct
from kis import client as kis_client


class ExecutionConfig(AppConfig):
    name = "execution"
    verbose_name = _("Execution")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import alerts, dispatch, selectors, signals
        from .services.handoff import HANDOFF

        # The hot statements are prepared on a direct connection only (core/rows.py).
        connection_created.connect(
            prepares_only_direct, dispatch_uid="core.rows.prepares_only_direct"
        )
        # The KIS client reports through hooks (it imports no app): alerted here.
        kis_client.HOOKS.breaker_transition = alerts.breaker_transition
        kis_client.HOOKS.credentials_refused = alerts.credentials_refused
        # What the ledger opens is handed over once committed by this process's choice.
        HANDOFF.takers = dispatch.takers
        HANDOFF.on_commit = dispatch.on_commit
        signals.connect()
        metrics.state_collector_register(selectors.reconciliation_metrics)
