"""/health/: the web process can reach its database and its cache, and what a person on call
asks next: the trading state in force, each KIS circuit's last known state, and the price feed's
last trade. Only the database and the cache make it degraded (503); the rest is reported.
/metrics: Prometheus."""

import hmac

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.db.models import Max
from django.http import HttpResponse, JsonResponse

from core import clock
from core import metrics as aegis_metrics
from core.metrics import database_check
from execution.models import TradingState
from execution.selectors import circuits_last
from market.models import BestPrice


def metrics(request):
    """/metrics: this web process's metrics and the shared state, for Prometheus. With
    AEGIS_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""

    token = settings.AEGIS_METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(aegis_metrics.exposition(), content_type=aegis_metrics.CONTENT_TYPE_LATEST)


def trading_report() -> dict:
    """The state in force, the circuits' last changes, the feed's last trade (age in s)."""
    state = TradingState.objects.filter(pk=TradingState.SINGLETON_PK).first()
    in_force = TradingState.State.ACTIVE if state is None else state.in_force
    if state is not None and state.awaiting_reconciliation:
        in_force += " (awaiting reconciliation)"
    last = BestPrice.objects.aggregate(at=Max("event_at"))["at"]
    return {
        "trading_state": in_force,
        "kis_circuits": {a.subject: a.state for a in circuits_last()},
        "last_trade_at": last.isoformat() if last else None,
        "last_trade_age_s": round((clock.now() - last).total_seconds()) if last else None,
    }


def health(request):
    checks = {"database": database_check()}
    try:
        cache.set("health:probe", 1, timeout=5)
        checks["cache"] = "ok" if cache.get("health:probe") == 1 else "error: miss"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    report: dict = {"status": "ok" if healthy else "degraded", **checks}
    if checks["database"] == "ok":
        try:
            report["trading"] = trading_report()
        except DatabaseError as exc:
            report["trading"] = f"error: {type(exc).__name__}"
    return JsonResponse(report, status=200 if healthy else 503)
