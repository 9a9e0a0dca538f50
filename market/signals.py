"""What a change to the market's rows means for every process's copy of them: a special day
saved or deleted (the admin) is installed in this process's calendar at once; the others read it
within a minute (market/calendar_sync.py)."""

from django.db.models.signals import post_delete, post_save

from .calendar_sync import overrides_refresh
from .models import SpecialDay


def _special_day_changed(sender, **kwargs) -> None:
    overrides_refresh(force=True)  # this process at once; the others within a minute


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(
            _special_day_changed, sender=SpecialDay, dispatch_uid=f"calendar-special-day-{signal}"
        )
