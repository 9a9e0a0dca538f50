"""What is true of the market and kept in the database: each symbol's best price (prices_best)
and the calendar's special days. Both came from trading with their tables, which keep their
names (migrations/0001_initial.py creates them in Django's state only).

Prices are whole KRW.
"""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from .calendar import REGULAR_CLOSE, REGULAR_OPEN
from .krx import SYMBOL_PATTERN

symbol_validator = RegexValidator(
    SYMBOL_PATTERN,
    _("A KRX short code is 6 characters, digits or upper-case letters (e.g. 005930)."),
)


class BestPrice(models.Model):
    """The freshest known price of a symbol, whichever source gave it."""

    class Source(models.TextChoices):
        WEBSOCKET = "WS", _("KIS WebSocket")
        REST = "REST", _("KIS REST")

    symbol = models.CharField(
        _("symbol"), max_length=6, primary_key=True, validators=[symbol_validator]
    )
    price = models.BigIntegerField(_("price"))
    prev_close = models.BigIntegerField(_("prev close"), null=True, blank=True)
    upper_limit = models.BigIntegerField(_("upper limit"), null=True, blank=True)
    lower_limit = models.BigIntegerField(_("lower limit"), null=True, blank=True)
    source = models.CharField(_("source"), max_length=4, choices=Source.choices)
    event_at = models.DateTimeField(
        _("event at"), help_text=_("When the trade happened at the exchange.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("best price")
        verbose_name_plural = _("best prices")
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

    day = models.DateField(_("day"), unique=True, help_text=_("The date, in Seoul."))
    closed = models.BooleanField(_("closed"), default=False, help_text=_("KRX is closed that day."))
    open_at = models.TimeField(
        _("open at"),
        null=True,
        blank=True,
        help_text=_("The regular session's open (Seoul), when not 09:00."),
    )
    close_at = models.TimeField(
        _("close at"),
        null=True,
        blank=True,
        help_text=_("The regular session's close (Seoul), when not 15:30."),
    )
    note = models.CharField(_("note"), max_length=120, blank=True, help_text=_("Why."))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("special day")
        verbose_name_plural = _("special days")
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
        day = {"day": f"{self.day:%Y-%m-%d}"}
        return (
            gettext("%(day)s closed") % day
            if self.closed
            else gettext("%(day)s special session") % day
        )

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.closed and (self.open_at or self.close_at):
            errors["closed"] = gettext("A closed day has no session times.")
        if not self.closed and not (self.open_at or self.close_at):
            errors["open_at"] = gettext("Set the open or the close, or mark the day closed.")
        opens = self.open_at or REGULAR_OPEN
        closes = self.close_at or REGULAR_CLOSE
        if not self.closed and not opens < closes:
            errors["close_at"] = gettext("The close must come after the open.")
        if errors:
            raise ValidationError(errors)


class PriceBar(models.Model):
    """One symbol's trades in one minute (open, high, low, close), for the desk's charts of the
    day. Written by the process that writes best prices, once the minute is over
    (market/bars.py); a few days are kept."""

    symbol = models.CharField(_("symbol"), max_length=6, validators=[symbol_validator])
    minute = models.DateTimeField(_("minute"), help_text=_("The minute's start."))
    open = models.BigIntegerField(_("open"))
    high = models.BigIntegerField(_("high"))
    low = models.BigIntegerField(_("low"))
    close = models.BigIntegerField(_("close"))

    class Meta:
        verbose_name = _("price bar")
        verbose_name_plural = _("price bars")
        db_table = "prices_bar"
        indexes = [models.Index(fields=["minute"], name="price_bar_minute")]  # the pruning
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
        KOSPI = "KOSPI", _("KOSPI")
        KOSDAQ = "KOSDAQ", _("KOSDAQ")

    code = models.CharField(
        _("code"), max_length=6, primary_key=True, validators=[symbol_validator]
    )
    # A stock's name: its own context, as Django's catalogue has a "name" of its own.
    name = models.CharField(pgettext_lazy("stock", "name"), max_length=80)
    market = models.CharField(_("market"), max_length=6, choices=Market.choices)
    group = models.CharField(
        _("security group"),
        max_length=2,
        blank=True,
        default="",
        db_default="",
        help_text=_("KRX's group code in the master file: ST a stock, EF an ETF, EN an ETN, …"),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    # Exchange-traded products: no transaction tax on a sale, the broker's ETF fee.
    ETP_GROUPS = ("EF", "EN")

    class Meta:
        verbose_name = _("symbol")
        verbose_name_plural = _("symbols")
        db_table = "market_symbol"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"
