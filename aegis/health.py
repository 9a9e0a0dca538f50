"""/health/: the web process can reach its database and its cache. /metrics: Prometheus."""

import hmac

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, JsonResponse

from core import metrics as aegis_metrics
from core.metrics import database_check


def metrics(request):
    """/metrics: this web process's metrics and the shared state, for Prometheus. With
    AEGIS_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""

    token = settings.AEGIS_METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(aegis_metrics.exposition(), content_type=aegis_metrics.CONTENT_TYPE_LATEST)


def health(request):
    checks = {"database": database_check()}
    try:
        cache.set("health:probe", 1, timeout=5)
        checks["cache"] = "ok" if cache.get("health:probe") == 1 else "error: miss"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503
    )
