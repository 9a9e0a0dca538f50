"""Who is sending: a source's bearer token (only its SHA-256 is stored), the optional HMAC of the
body, and the source's rate. Nothing secret is ever logged or echoed back."""

import hashlib
import hmac
import logging
import os
import re
import secrets
import time

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .models import PickSource

logger = logging.getLogger("aegis.picks")

SIGNATURE_HEADER = "X-Aegis-Signature"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_issue(source: PickSource) -> str:
    """A new token for `source`; only its SHA-256 is kept. Shown to the caller once."""
    token = secrets.token_urlsafe(32)
    source.token_sha256 = token_digest(token)
    source.save(update_fields=["token_sha256"])
    return token


def hmac_env_name(code: str) -> str:
    return "AEGIS_PICKS_HMAC_" + re.sub(r"[^A-Z0-9]", "_", code.upper())


class SourceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`: request.auth is the PickSource it belongs to."""

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            raise exceptions.NotAuthenticated("Send the source's token: Authorization: Bearer …")
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        source = PickSource.objects.filter(token_sha256=token_digest(token)).first()
        if source is None or not source.token_sha256:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not source.active:
            raise exceptions.PermissionDenied(f"Source {source.code} is not active.")
        return (None, source)

    def authenticate_header(self, request):
        return 'Bearer realm="aegis-picks"'


def require_signature(request, source: PickSource) -> None:
    """The body's HMAC-SHA256, keyed by the source's secret from the environment, when the
    source requires one."""
    if not source.require_hmac:
        return
    secret = os.environ.get(hmac_env_name(source.code), "")
    if not secret:
        logger.error("picks.hmac_unconfigured source=%s env=%s", source.code,
                     hmac_env_name(source.code))
        raise exceptions.PermissionDenied(
            f"Source {source.code} requires a signature but none is configured on this server.")
    sent = request.headers.get(SIGNATURE_HEADER, "")
    if not sent.startswith("sha256="):
        raise exceptions.AuthenticationFailed(f"Send {SIGNATURE_HEADER}: sha256=<hex HMAC>.")
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sent[len("sha256="):].lower(), expected):
        raise exceptions.AuthenticationFailed("The body's signature does not match.")


class Throttled(exceptions.Throttled):
    default_detail = "This source sends more picks than its rate allows."


_limiter = None


def _rate_limiter():
    global _limiter
    if _limiter is None:
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        url = settings.REDIS_URL or "memory://"
        _limiter = MovingWindowRateLimiter(storage_from_string(url))
    return _limiter


def require_rate(source: PickSource, picks: int) -> None:
    """Count `picks` against the source's rate (every web process shares the count through
    Redis). Over it: 429 with Retry-After. Redis unreachable: let the batch in and log it; the
    router's risk gate, not the rate, is what protects the account."""
    from limits import parse

    item = parse(source.rate_limit)
    limiter = _rate_limiter()
    try:
        if limiter.hit(item, "picks", source.code, cost=max(1, picks)):
            return
        reset_at = limiter.get_window_stats(item, "picks", source.code).reset_time
    except Exception as exc:  # noqa: BLE001 - fail open, loudly
        logger.warning("picks.rate_unavailable source=%s: %s: batch let in",
                       source.code, type(exc).__name__)
        return
    raise Throttled(wait=max(1, int(reset_at - time.time() + 0.999)))


try:  # the OpenAPI schema's description of the token (drf-spectacular)
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class SourceTokenScheme(OpenApiAuthenticationExtension):
        target_class = "picks.auth.SourceTokenAuthentication"
        name = "sourceToken"

        def get_security_definition(self, auto_schema):
            return {"type": "http", "scheme": "bearer",
                    "description": "The source's API token (manage.py picks_source)."}
except ImportError:  # pragma: no cover - drf-spectacular is pinned in requirements.txt
    pass
