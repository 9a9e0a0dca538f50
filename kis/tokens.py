"""KIS access tokens and WebSocket approval keys, shared by every process.

KIS issues one token a minute per app key and returns the same token within six hours, so a
token is issued by one process and read by all: from a per-process memo, then the shared cache
(Redis in production), then the durable vault (PostgreSQL, when given: Redis may lose its data),
and only when all miss or near expiry, issued under a cache lock that one process holds at a
time. The cache key names the app by fingerprint, never by key.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

from django.core.cache import cache as default_cache

from core.redis_clients import Outage

from .config import AppCredentials
from .errors import KisTokenRateLimited, KisUnavailable

logger = logging.getLogger("aegis.kis")

LOCK_TTL_S = 30
# Long enough to ride out KIS's one-issuance-a-minute window when another process holds it.
WAIT_FOR_OTHER_ISSUER_S = 75


@dataclass(frozen=True)
class Credential:
    value: str
    expires_at: float  # epoch seconds


class CredentialStore:
    """One kind of shared credential (access token or approval key) per app."""

    def __init__(
        self,
        *,
        kind: str,
        renew_before_s: float,
        cache=None,
        vault=None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = kind
        self.vault = vault
        self.renew_before_s = renew_before_s
        self.cache = cache or default_cache
        self.clock = clock
        self._memo: dict[str, Credential] = {}
        self._local = threading.Lock()
        self._outage = Outage(f"kis.{kind}_cache", logger)

    def _cached(self, op, *args, **kwargs):
        """op(*args, **kwargs) on the shared cache; _DOWN, without asking, while it is taken as
        down, or when it fails now."""
        if self._outage.active():
            return _DOWN
        try:
            result = op(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a cache outage slows us down, never stops us
            self._outage.failed(exc)
            return _DOWN
        self._outage.answered()
        return result

    def _key(self, app: AppCredentials) -> str:
        return f"kis:{self.kind}:{app.fingerprint}"

    def _fresh(self, cred: Credential | None) -> TypeGuard[Credential]:
        return cred is not None and cred.expires_at - self.clock() > self.renew_before_s

    def _usable(self, cred: Credential | None) -> TypeGuard[Credential]:
        return cred is not None and cred.expires_at - self.clock() > 5

    def _read_cache(self, key: str) -> Credential | None:
        raw = self._cached(self.cache.get, key)
        return Credential(**raw) if raw and raw is not _DOWN else None

    def _read_shared(self, key: str, app: AppCredentials) -> Credential | None:
        """From the cache, else from the vault (and put back into the cache)."""
        if (cached := self._read_cache(key)) is not None:
            return cached
        if self.vault is None or (kept := self.vault.get(self.kind, app)) is None:
            return None
        cred = Credential(*kept)
        if self._usable(cred):
            self._write_cache(key, cred)
        return cred

    def held(self, app: AppCredentials) -> bool:
        """Whether this process holds a fresh credential for `app` (get() returns it at once)."""
        return self._fresh(self._memo.get(self._key(app)))

    def get(self, app: AppCredentials, issue: Callable[[], Credential]) -> str:
        key = self._key(app)
        memo = self._memo.get(key)
        if self._fresh(memo):
            return memo.value
        with self._local:
            shared = self._read_shared(key, app)
            if self._fresh(shared):
                self._memo[key] = shared
                return shared.value
            cred = self._issue_once(key, app, issue, fallback=shared or memo)
            self._memo[key] = cred
            return cred.value

    def _issue_once(
        self,
        key: str,
        app: AppCredentials,
        issue: Callable[[], Credential],
        fallback: Credential | None,
    ) -> Credential:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + WAIT_FOR_OTHER_ISSUER_S
        while True:
            got_lock = self._cached(self.cache.add, f"{key}:lock", owner, timeout=LOCK_TTL_S)
            if got_lock is _DOWN:  # no shared cache: issue alone
                got_lock = True
            if got_lock:
                try:
                    shared = self._read_shared(key, app)
                    if self._fresh(shared):
                        return shared
                    try:
                        cred = issue()
                    except KisTokenRateLimited:
                        if self._usable(fallback):
                            return fallback  # renew later; the current one still works
                        raise
                    self._write_cache(key, cred)
                    if self.vault is not None:
                        self.vault.put(self.kind, app, cred.value, cred.expires_at)
                    logger.info(
                        "kis.%s issued app=%s expires_at=%s",
                        self.kind,
                        app.fingerprint,
                        int(cred.expires_at),
                    )
                    return cred
                finally:
                    self._release(f"{key}:lock", owner)
            time.sleep(0.05)
            shared = self._read_shared(key, app)
            if self._fresh(shared):
                return shared
            if time.monotonic() > deadline:
                raise KisUnavailable(
                    f"no {self.kind} for app {app.fingerprint}: another process "
                    f"held the issuance lock for {WAIT_FOR_OTHER_ISSUER_S} s"
                )

    def _write_cache(self, key: str, cred: Credential) -> None:
        self._cached(
            self.cache.set,
            key,
            {"value": cred.value, "expires_at": cred.expires_at},
            timeout=max(1, int(cred.expires_at - self.clock())),
        )

    def _release(self, lock_key: str, owner: str) -> None:
        if self._cached(self.cache.get, lock_key) == owner:  # else it expires by itself
            self._cached(self.cache.delete, lock_key)

    def invalidate(self, app: AppCredentials, value: str) -> None:
        """Forget `value` (KIS said it is expired or invalid), unless it was already replaced."""
        key = self._key(app)
        if (memo := self._memo.get(key)) is not None and memo.value == value:
            del self._memo[key]
        shared = self._read_cache(key)
        if shared is not None and shared.value == value:
            self._cached(self.cache.delete, key)
        if self.vault is not None:
            self.vault.discard(self.kind, app, value)


_DOWN = object()
