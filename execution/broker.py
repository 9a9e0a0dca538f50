"""The broker this process talks to: one KIS client (kis/) per process, built from settings, its
credentials kept in the ledger's vault and its events alerted.

The vault is the durable tier of shared KIS credentials: PostgreSQL, behind the per-process memo
and the Redis cache. Redis may lose its data (a restart without persistence); KIS will not issue a
new token for a minute, so every worker that had not memoised the token would stall. The vault
keeps the value sealed with a key derived from the app secret (Fernet), which only the
environment holds.
"""

import base64
import datetime as dt
import functools
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken
from django.db import DatabaseError, transaction

from execution.models import BrokerCredential
from kis.client import KisClient
from kis.config import AppCredentials, KisConfig

logger = logging.getLogger("aegis.kis")


def _fernet(app: AppCredentials) -> Fernet:
    digest = hashlib.sha256(b"aegis.broker-credential:" + app.appsecret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class DatabaseVault:
    """get/put/discard by (kind, app). Failures are logged and read as a miss: the vault makes
    an outage cheaper, never a cause of one."""

    def get(self, kind: str, app: AppCredentials) -> tuple[str, float] | None:

        try:
            row = BrokerCredential.objects.filter(
                kind=kind, app_fingerprint=app.fingerprint
            ).first()
        except DatabaseError:
            logger.warning("kis.%s vault unreachable", kind)
            return None
        if row is None:
            return None
        try:
            value = _fernet(app).decrypt(row.sealed_value.encode()).decode()
        except InvalidToken:
            logger.warning(
                "kis.%s vault entry for app %s is sealed with another secret; ignored",
                kind,
                app.fingerprint,
            )
            return None
        return value, row.expires_at.timestamp()

    def put(self, kind: str, app: AppCredentials, value: str, expires_at: float) -> None:

        sealed = _fernet(app).encrypt(value.encode()).decode()
        try:
            with transaction.atomic():
                BrokerCredential.objects.update_or_create(
                    kind=kind,
                    app_fingerprint=app.fingerprint,
                    defaults={
                        "sealed_value": sealed,
                        "expires_at": dt.datetime.fromtimestamp(expires_at, dt.UTC),
                    },
                )
        except DatabaseError:
            logger.warning("kis.%s could not be kept in the vault", kind)

    def discard(self, kind: str, app: AppCredentials, value: str) -> None:
        current = self.get(kind, app)
        if current is None or current[0] != value:
            return

        try:
            BrokerCredential.objects.filter(kind=kind, app_fingerprint=app.fingerprint).delete()
        except DatabaseError:
            logger.warning("kis.%s could not be removed from the vault", kind)


@functools.cache
def get_broker() -> KisClient:
    return KisClient(KisConfig.from_settings(), vault=DatabaseVault())
