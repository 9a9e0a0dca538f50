"""Cache invalidation: a source's save or delete (the admin, picks_source, a token issued)
forgets the cached copies its tokens' digests map to (picks/auth.py), at once and once more
after the commit, so that a request between the two cannot keep the old row."""

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from .auth import logger, source_key
from .models import PickSource


def _forget(digests) -> None:

    keys = [source_key(d) for d in digests if d]
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except Exception as exc:  # noqa: BLE001 - the entries lapse within SOURCE_CACHE_S
        logger.warning("picks.source_cache_forget_failed: %s", type(exc).__name__)


def _before_save(sender, instance: PickSource, **kwargs) -> None:
    """The digest stored before this save (a new token replaces it)."""
    instance._stored_digest = (
        PickSource.objects.filter(pk=instance.pk).values_list("token_sha256", flat=True).first()
        if instance.pk
        else None
    )


def _changed(sender, instance: PickSource, **kwargs) -> None:
    digests = {instance.token_sha256, getattr(instance, "_stored_digest", None)}
    _forget(digests)
    transaction.on_commit(lambda: _forget(digests), robust=True)


def connect() -> None:
    pre_save.connect(_before_save, sender=PickSource, dispatch_uid="picks-source-digest")
    for signal in (post_save, post_delete):
        signal.connect(_changed, sender=PickSource, dispatch_uid=f"picks-source-{signal}")
