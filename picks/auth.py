"""Who is sending: a source's bearer token (only its SHA-256 is stored), the optional HMAC of the
body, and the source's rate. Nothing secret is ever logged or echoed back."""

import hashlib
import hmac
import logging
import os
import re
import time

from django.conf import settings
from django.core.cache import cache
from limits import parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from .models import PickSource
from .services import token_digest

logger = logging.getLogger("aegis.picks")

SIGNATURE_HEADER = "X-Aegis-Signature"
_SIGNATURE_PREFIX = "sha256="
SIGNATURE_PATTERN = r"^sha256=[0-9a-fA-F]{64}$"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


class RateExceeded(exceptions.Throttled):
    default_detail = "This source sends more picks than its rate allows."


def hmac_env_name(code: str) -> str:
    """AEGIS_PICKS_HMAC_<CODE>: upper case, anything but letters and digits as _."""
    return "AEGIS_PICKS_HMAC_" + re.sub(r"[^A-Z0-9]", "_", code.upper())


# The source a token's digest belongs to, kept in the cache (Redis) for SOURCE_CACHE_S: the
# lookup on every ingest costs a query the ORM compiles (about 3 ms on this path, measured),
# against one Redis round trip. A source's save or delete forgets its entries at once and
# again after the commit (picks/signals.py); the TTL bounds what a missed forget could keep.
# A digest that matches no source is never kept.
SOURCE_CACHE_S = 60


def source_key(digest: str) -> str:
    return f"picks:source:{digest}"


def source_of(digest: str) -> PickSource | None:
    """The source whose token has SHA-256 `digest`: the cache's copy, else PostgreSQL's (kept).
    The cache unreachable: PostgreSQL's, as if nothing were kept."""

    key = source_key(digest)
    try:
        source = cache.get(key)
    except Exception as exc:  # noqa: BLE001 - any cache failure is a miss
        logger.warning("picks.source_cache_unavailable: %s", type(exc).__name__)
        source = None
    if source is None:
        source = PickSource.objects.filter(token_sha256=digest).first()
        if source is not None:
            try:
                cache.set(key, source, timeout=SOURCE_CACHE_S)
            except Exception as exc:  # noqa: BLE001
                logger.warning("picks.source_cache_unavailable: %s", type(exc).__name__)
    return source


class SourceTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`: request.auth is the PickSource the token belongs to.
    The lookup is by the token's SHA-256, so no stored value can be replayed as a token, and
    timing reveals nothing about tokens (only about hashes of what the caller sent)."""

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
        source = source_of(token_digest(token))
        if source is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not source.active:
            raise exceptions.PermissionDenied(f"Source {source.code} is not active.")
        return (None, source)

    def authenticate_header(self, request):
        return 'Bearer realm="aegis-picks"'


def require_signature(request, source: PickSource) -> None:
    """When the source requires it: `X-Aegis-Signature: sha256=<hex HMAC-SHA256 of the raw
    body>`, keyed by the secret in the environment variable hmac_env_name(code). A signature
    sent in any other shape is refused whether or not the source must sign: its sender is set
    up wrongly, and the schema allows only that shape."""
    sent = request.headers.get(SIGNATURE_HEADER)
    if sent is not None and not re.fullmatch(SIGNATURE_PATTERN, sent):
        raise exceptions.AuthenticationFailed(
            f"{SIGNATURE_HEADER} must read sha256=<64 hex digits of the HMAC>."
        )
    if not source.require_hmac:
        return
    secret = os.environ.get(hmac_env_name(source.code), "")
    if not secret:
        logger.error(
            "picks.hmac_unconfigured source=%s env=%s", source.code, hmac_env_name(source.code)
        )
        raise exceptions.PermissionDenied(
            f"Source {source.code} must sign its picks, but this server has no secret for it "
            f"({hmac_env_name(source.code)} is not set): ask the operator."
        )
    if sent is None:
        raise exceptions.AuthenticationFailed(f"Send {SIGNATURE_HEADER}: sha256=<hex HMAC>.")
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest().encode()
    given = sent[len(_SIGNATURE_PREFIX) :].lower().encode()  # ASCII: the pattern held
    if not hmac.compare_digest(given, expected):
        raise exceptions.AuthenticationFailed("The body's signature does not match.")


_limiters: dict[str, object] = {}


def _rate_limiter():
    """One limiter per process and storage URL. Redis (settings.PICKS_RATE_STORAGE_URL, the
    same server as Celery by default) is shared by every web process; short socket timeouts
    keep a sick Redis from holding requests on this 20 ms path."""
    url = settings.PICKS_RATE_STORAGE_URL
    limiter = _limiters.get(url)
    if limiter is None:
        options = {}
        if url.startswith(("redis://", "rediss://")):
            timeout = settings.PICKS_RATE_STORAGE_TIMEOUT_S
            options = {
                "wrap_exceptions": True,
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "key_prefix": "aegis:picks:rate",
            }
        limiter = _limiters[url] = MovingWindowRateLimiter(storage_from_string(url, **options))
    return limiter


def require_rate(source: PickSource, picks: int) -> None:
    """Count `picks` (the batch size) against the source's rate in a moving window: exact, with
    no burst of twice the rate at a window's edge. Over it: 429 with Retry-After, and the batch
    counts for nothing. A batch larger than the whole rate could never pass: 413.

    Redis unreachable: fail open. The batch is let in and the failure logged
    (picks.rate_unavailable). The rate protects this server from a runaway strategy; what
    protects the account is the router's risk gate, which does not depend on Redis, and
    refusing every pick during a Redis blip would silently drop entries."""

    try:
        item = parse(source.rate_limit)
    except ValueError:
        logger.error("picks.rate_invalid source=%s: batch let in", source.code)
        return
    if picks > item.amount:
        raise PayloadTooLarge(
            f"Source {source.code} may send {source.rate_limit}: a batch "
            f"holds at most {item.amount} of its picks."
        )
    limiter = _rate_limiter()
    try:
        if limiter.hit(item, "picks", source.code, cost=picks):
            return
        reset_at = limiter.get_window_stats(item, "picks", source.code).reset_time
    except (StorageError, ConnectionError, TimeoutError, OSError) as exc:
        logger.warning(
            "picks.rate_unavailable source=%s error=%s: batch let in",
            source.code,
            type(getattr(exc, "storage_error", exc)).__name__,
        )
        return
    logger.info(
        "picks.rate_exceeded source=%s count=%s rate=%s", source.code, picks, source.rate_limit
    )
    raise RateExceeded(wait=max(1, int(reset_at - time.time() + 0.999)))


try:  # the OpenAPI schema's description of the token (drf-spectacular)
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class SourceTokenScheme(OpenApiAuthenticationExtension):
        target_class = "picks.auth.SourceTokenAuthentication"
        name = "sourceToken"

        def get_security_definition(self, auto_schema):
            return {
                "type": "http",
                "scheme": "bearer",
                "description": "The source's API token (manage.py picks_source, or the "
                "admin's issue-token action). Sources that require it "
                f"also sign the body: {SIGNATURE_HEADER}: sha256=<hex "
                "HMAC-SHA256 of the raw body>.",
            }
except ImportError:  # pragma: no cover - drf-spectacular is pinned in requirements.txt
    pass
