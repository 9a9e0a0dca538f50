"""What a change to the market's rows means for every process's copy of them, once its
transaction commits: a best price changed outside best_price_write (which writes through) is
forgotten by the price cache (market/prices.py); a special day saved or deleted (the admin) is
installed in this process's calendar at once, and the others read it within a minute
(market/calendar_sync.py)."""

from django.db.models.signals import post_delete, post_save

from . import prices
from .calendar_sync import overrides_refresh
from .models import BestPrice, SpecialDay


def _price_changed(sender, instance: BestPrice, **kwargs) -> None:
    prices.prices_changed([instance.symbol])  # best_price_write's upsert writes through instead


def _special_day_changed(sender, **kwargs) -> None:
    overrides_refresh(force=True)  # this process at once; the others within a minute


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(_price_changed, sender=BestPrice, dispatch_uid=f"hot-price-{signal}")
        signal.connect(
            _special_day_changed, sender=SpecialDay, dispatch_uid=f"calendar-special-day-{signal}"
        )
