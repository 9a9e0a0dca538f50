"""What is true of the market and kept in the database: each symbol's best price (prices_best)
and the calendar's special days. Both came from trading with their tables, which keep their
names (migrations/0001_initial.py creates them in Django's state only).

Prices are whole KRW.
"""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from .calendar import REGULAR_CLOSE, REGULAR_OPEN
from .krx import SYMBOL_PATTERN

symbol_validator = RegexValidator(
    SYMBOL_PATTERN, "A KRX short code is 6 characters, digits or upper-case letters (e.g. 005930)."
)


class BestPrice(models.Model):
    """The freshest known price of a symbol, whichever source gave it."""

    class Source(models.TextChoices):
        WEBSOCKET = "WS", "KIS WebSocket"
        REST = "REST", "KIS REST"

    symbol = models.CharField(max_length=6, primary_key=True, validators=[symbol_validator])
    price = models.BigIntegerField()
    prev_close = models.BigIntegerField(null=True, blank=True)
    upper_limit = models.BigIntegerField(null=True, blank=True)
    lower_limit = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=4, choices=Source.choices)
    event_at = models.DateTimeField(help_text="When the trade happened at the exchange.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "prices_best"
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="best_price_positive"),
            models.CheckConstraint(
                condition=Q(prev_close__isnull=True) | Q(prev_close__gt=0),
                name="best_price_prev_close_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.price}"


class SpecialDay(models.Model):
    """A day KRX trades otherwise than its calendar says: an extra closure, or a late open or
    close it announces. Overrides the holiday library and the built-in table (late opens, CSAT)
    for its date; every process reads the list again within a minute of a change."""

    day = models.DateField(unique=True, help_text="The date, in Seoul. / 날짜")
    closed = models.BooleanField(default=False, help_text="KRX is closed that day. / 휴장일")
    open_at = models.TimeField(
        null=True,
        blank=True,
        help_text="The regular session's open (Seoul), when not 09:00. / 개장 시각",
    )
    close_at = models.TimeField(
        null=True,
        blank=True,
        help_text="The regular session's close (Seoul), when not 15:30. / 폐장 시각",
    )
    note = models.CharField(max_length=120, blank=True, help_text="Why. / 사유")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "trading_specialday"  # its name from when trading held it
        ordering = ("day",)
        constraints = [
            models.CheckConstraint(
                condition=Q(closed=False) | Q(open_at__isnull=True, close_at__isnull=True),
                name="special_day_closed_has_no_times",
            ),
            models.CheckConstraint(
                condition=Q(closed=True) | Q(open_at__isnull=False) | Q(close_at__isnull=False),
                name="special_day_open_has_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {'closed' if self.closed else 'special session'}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.closed and (self.open_at or self.close_at):
            errors["closed"] = (
                "A closed day has no session times. / 휴장일에는 시각을 입력하지 않습니다."
            )
        if not self.closed and not (self.open_at or self.close_at):
            errors["open_at"] = (
                "Set the open or the close, or mark the day closed. / 개장 또는 "
                "폐장 시각을 입력하거나 휴장으로 표시하세요."
            )
        opens = self.open_at or REGULAR_OPEN
        closes = self.close_at or REGULAR_CLOSE
        if not self.closed and not opens < closes:
            errors["close_at"] = (
                "The close must come after the open. / 폐장은 개장 이후여야 합니다."
            )
        if errors:
            raise ValidationError(errors)


class PriceBar(models.Model):
    """One symbol's trades in one minute (open, high, low, close), for the desk's charts of the
    day. Written by the process that writes best prices, once the minute is over
    (market/bars.py); a few days are kept."""

    symbol = models.CharField(max_length=6, validators=[symbol_validator])
    minute = models.DateTimeField(help_text="The minute's start.")
    open = models.BigIntegerField()
    high = models.BigIntegerField()
    low = models.BigIntegerField()
    close = models.BigIntegerField()

    class Meta:
        db_table = "prices_bar"
        constraints = [
            models.UniqueConstraint(fields=["symbol", "minute"], name="price_bar_symbol_minute"),
            models.CheckConstraint(
                condition=Q(low__gt=0, low__lte=models.F("high")), name="price_bar_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.minute:%H:%M} {self.close}"


class Symbol(models.Model):
    """A listed stock's name, from KRX's master files as KIS publishes them
    (`manage.py symbols_load`), so pages show 005930 삼성전자 rather than a bare code."""

    class Market(models.TextChoices):
        KOSPI = "KOSPI", "KOSPI"
        KOSDAQ = "KOSDAQ", "KOSDAQ"

    code = models.CharField(max_length=6, primary_key=True, validators=[symbol_validator])
    name = models.CharField(max_length=80)
    market = models.CharField(max_length=6, choices=Market.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "market_symbol"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"
