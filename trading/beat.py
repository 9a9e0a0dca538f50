"""celery beat with the market cadence: django-celery-beat's database schedule, plus an exit
pass every 200 ms / 500 ms / 2 s as the day's windows say (trading/cadence.py).

django-celery-beat's interval schedules cannot go below a second, and beat sleeps until the
next due entry, so the cadence lives in the scheduler's tick. The database schedule is still
read at its own pace, not on every sub-second tick. Run exactly one beat.
"""

import logging
import time

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from core import clock
from market.calendar import Window
from market.calendar_sync import overrides_refresh

from .cadence import CadenceDriver, PrequeueDriver
from .models import CadenceWindow
from .tasks import exit_pass_task, gap_prequeue_task

logger = logging.getLogger("aegis.trading")


def windows_from_db() -> tuple[Window, ...]:

    return tuple(
        Window(w.anchor, w.start_offset_s, w.end_offset_s, w.interval_ms)
        for w in CadenceWindow.objects.filter(enabled=True)
    )


def send_exit_pass(expires_s: float) -> None:

    exit_pass_task.apply_async(expires=expires_s)


def send_gap_prequeue() -> None:

    gap_prequeue_task.apply_async(expires=60)


class ExitCadenceScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cadence = CadenceDriver(
            send=send_exit_pass,
            windows=windows_from_db,
            default_ms=settings.TRADING_EXIT_DEFAULT_INTERVAL_MS,
        )
        self.prequeue = PrequeueDriver(send=lambda: send_gap_prequeue())
        self._database_due = 0.0

    def tick(self, *args, **kwargs) -> float:
        if time.monotonic() >= self._database_due:
            self._database_due = time.monotonic() + super().tick(*args, **kwargs)
        try:
            overrides_refresh()  # the special days, at most once a minute
        except Exception as exc:  # noqa: BLE001 - the calendar in force stands meanwhile
            logger.warning("trading.calendar_overrides unread: %s", type(exc).__name__)
        now = clock.now()
        # The drivers wait in the clock's seconds; beat sleeps real ones.
        wait = min(self.cadence.tick(now), self.prequeue.tick(now)) / clock.speed()
        return max(0.0, min(wait, self._database_due - time.monotonic()))
