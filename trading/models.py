"""Exit profiles, per-position exit state and the cadence windows of the exit engine.

Percentages are Decimals of percent (5.00 means 5 %); prices are whole KRW. Best prices and the
calendar's special days are the market's (market/models.py).
"""

import datetime as dt
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from execution.models import Position

MARKET_OPEN = dt.time(9, 0)
MARKET_CLOSE = dt.time(15, 30)


def _pct(max_value: str, **kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=6,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal(max_value))],
        **kwargs,
    )


class ExitProfile(models.Model):
    name = models.CharField(_("name"), max_length=64, unique=True)
    description = models.CharField(_("description"), max_length=255, blank=True)
    stop_loss_pct = _pct(
        "30",
        verbose_name=_("stop loss pct"),
        null=True,
        blank=True,
        help_text=_("Sell all when the price falls this % below cost."),
    )
    trailing_activation_pct = _pct(
        "300",
        verbose_name=_("trailing activation pct"),
        null=True,
        blank=True,
        help_text=_("The trailing stop arms once the gain reaches this %."),
    )
    trailing_pct = _pct(
        "30",
        verbose_name=_("trailing pct"),
        null=True,
        blank=True,
        help_text=_("Once armed, sell all this % below the high-water mark."),
    )
    gap_down_pct = _pct(
        "30",
        verbose_name=_("gap down pct"),
        null=True,
        blank=True,
        default=Decimal("5.00"),
        # xgettext:no-python-format ("% or" is no placeholder)
        help_text=_("Sell all at the open when it is this % or more below the previous close."),
    )
    day_trade = models.BooleanField(
        _("day trade"), default=False, help_text=_("Close every position before the close.")
    )
    time_exit_at = models.TimeField(
        _("time exit at"),
        null=True,
        blank=True,
        help_text=_("Asia/Seoul time of day to sell all (day-trade profiles)."),
    )
    max_holding_days = models.PositiveSmallIntegerField(
        _("max holding days"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text=_("Sell all after this many trading days."),
    )
    stop_in_opening_auction = models.BooleanField(
        _("stop in opening auction"),
        default=False,
        db_default=False,
        help_text=_(
            "Let the stop loss decide before the open, on the opening auction's expected "
            "price: its order joins the auction (08:30-09:00) and trades at the opening "
            "price. Off: every rule decides from the open."
        ),
    )
    nxt_exits = models.BooleanField(
        _("nxt exits"),
        default=False,
        db_default=False,
        help_text=_(
            "Let exits go to Nextrade in its pre-market (08:00-08:50) and after-market "
            "(15:40-20:00), as limit orders, on the prices traded there. Off: exits are decided "
            "in KRX's regular session only."
        ),
    )

    class ViAction(models.TextChoices):
        AUCTION = "AUCTION", _("Join the VI's call auction")
        WAIT = "WAIT", _("Wait for trading to resume")

    vi_action = models.CharField(
        _("vi action"),
        max_length=7,
        choices=ViAction.choices,
        default=ViAction.AUCTION,
        db_default=ViAction.AUCTION,
        help_text=_(
            "An exit decided while its stock is in a volatility interruption (a two-minute "
            "call auction): join the auction with its limit order, or decide again on the first "
            "trade after it."
        ),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("exit profile")
        verbose_name_plural = _("exit profiles")
        constraints = [
            models.CheckConstraint(
                condition=Q(vi_action__in=["AUCTION", "WAIT"]), name="profile_vi_action_valid"
            ),
            models.CheckConstraint(
                condition=Q(stop_loss_pct__isnull=True)
                | Q(stop_loss_pct__gt=0, stop_loss_pct__lte=30),
                name="profile_stop_loss_range",
            ),
            models.CheckConstraint(
                condition=Q(trailing_pct__isnull=True, trailing_activation_pct__isnull=True)
                | Q(
                    trailing_pct__gt=0,
                    trailing_pct__lte=30,
                    trailing_activation_pct__gt=0,
                    trailing_activation_pct__lte=300,
                ),
                name="profile_trailing_both_or_neither",
            ),
            models.CheckConstraint(
                condition=Q(gap_down_pct__isnull=True)
                | Q(gap_down_pct__gt=0, gap_down_pct__lte=30),
                name="profile_gap_down_range",
            ),
            models.CheckConstraint(
                condition=Q(day_trade=False) | Q(time_exit_at__isnull=False),
                name="profile_day_trade_has_time_exit",
            ),
            models.CheckConstraint(
                condition=Q(max_holding_days__isnull=True)
                | Q(max_holding_days__gte=1, max_holding_days__lte=365),
                name="profile_max_holding_days_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if (self.trailing_pct is None) != (self.trailing_activation_pct is None):
            message = gettext("Set both the trailing activation % and the trail %, or neither.")
            errors["trailing_pct" if self.trailing_pct is None else "trailing_activation_pct"] = (
                message
            )
        if self.day_trade and self.time_exit_at is None:
            errors["time_exit_at"] = gettext(
                "A day-trade profile needs the time of day to sell all."
            )
        if self.time_exit_at is not None and not (MARKET_OPEN < self.time_exit_at < MARKET_CLOSE):
            errors["time_exit_at"] = gettext(
                "The time exit must fall inside the session (09:00–15:30)."
            )
        if errors:
            raise ValidationError(errors)


class TakeProfitTier(models.Model):
    """Sell `sell_pct` % of the position's peak qty once the gain reaches `gain_pct` %."""

    profile = models.ForeignKey(
        ExitProfile, on_delete=models.CASCADE, related_name="tiers", verbose_name=_("profile")
    )
    gain_pct = _pct("300", verbose_name=_("gain pct"))
    sell_pct = models.DecimalField(
        _("sell pct"),
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
    )

    class Meta:
        verbose_name = _("take profit tier")
        verbose_name_plural = _("take profit tiers")
        ordering = ["gain_pct"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "gain_pct"], name="tier_unique_gain"),
            models.CheckConstraint(
                condition=Q(gain_pct__gt=0, gain_pct__lte=300), name="tier_gain_range"
            ),
            models.CheckConstraint(
                condition=Q(sell_pct__gt=0, sell_pct__lte=100), name="tier_sell_range"
            ),
        ]

    def __str__(self) -> str:
        return gettext("+%(gain)s%% → sell %(sell)s%%") % {
            "gain": self.gain_pct,
            "sell": self.sell_pct,
        }


class PositionExitState(models.Model):
    """What the exit engine remembers about one position."""

    position = models.OneToOneField(
        Position,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="exit_state",
        verbose_name=_("position"),
    )
    profile = models.ForeignKey(
        ExitProfile, on_delete=models.PROTECT, related_name="positions", verbose_name=_("profile")
    )
    high_water_mark = models.BigIntegerField(_("high water mark"), null=True, blank=True)
    peak_qty = models.BigIntegerField(
        _("peak qty"), default=0, help_text=_("Most shares held; tiers sell shares of it.")
    )
    tiers_done = models.PositiveSmallIntegerField(_("tiers done"), default=0)
    paused_at = models.DateTimeField(
        _("paused at"),
        null=True,
        blank=True,
        help_text=_(
            "Its exits are paused since then (none decided, GAP_DOWN included) until a "
            "person resumes them."
        ),
    )
    paused_by = models.CharField(_("paused by"), max_length=150, blank=True, db_default="")
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("position exit state")
        verbose_name_plural = _("position exit states")
        constraints = [
            models.CheckConstraint(
                condition=Q(high_water_mark__isnull=True) | Q(high_water_mark__gt=0),
                name="exit_state_hwm_positive",
            ),
            models.CheckConstraint(condition=Q(peak_qty__gte=0), name="exit_state_peak_qty"),
        ]

    def __str__(self) -> str:
        return gettext("exit state of position %(position)s") % {"position": self.position_id}


class CadenceWindow(models.Model):
    """A stretch of the trading day around the open or the close with its own exit-evaluation
    interval (the morning rush). Read by the beat scheduler every few seconds: a change applies
    without a restart. Outside every window the default interval applies."""

    class Anchor(models.TextChoices):
        OPEN = "open", _("the day's open")
        CLOSE = "close", _("the day's close")

    name = models.CharField(_("name"), max_length=64, unique=True)
    anchor = models.CharField(_("anchor"), max_length=5, choices=Anchor.choices)
    start_offset_s = models.IntegerField(
        _("start offset s"),
        help_text=_("Seconds from the anchor at which the window starts (negative: before it)."),
    )
    end_offset_s = models.IntegerField(
        _("end offset s"), help_text=_("Seconds from the anchor at which it ends.")
    )
    interval_ms = models.PositiveIntegerField(
        _("interval ms"),
        validators=[MinValueValidator(50), MaxValueValidator(60_000)],
        help_text=_("Milliseconds between exit evaluations inside the window."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("cadence window")
        verbose_name_plural = _("cadence windows")
        ordering = ["anchor", "start_offset_s"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_offset_s__gt=models.F("start_offset_s")),
                name="cadence_window_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(interval_ms__gte=50, interval_ms__lte=60_000),
                name="cadence_window_interval_range",
            ),
            models.CheckConstraint(
                condition=Q(anchor__in=["open", "close"]), name="cadence_window_anchor_valid"
            ),
        ]

    def __str__(self) -> str:
        text = {
            "name": self.name,
            "interval": self.interval_ms,
            "start": f"{self.start_offset_s:+d}",
            "end": f"{self.end_offset_s:+d}",
        }
        if self.anchor == self.Anchor.OPEN:
            return gettext("%(name)s: every %(interval)s ms, open %(start)s s to %(end)s s") % text
        if self.anchor == self.Anchor.CLOSE:
            return gettext("%(name)s: every %(interval)s ms, close %(start)s s to %(end)s s") % text
        return (  # an anchor that is neither: not a row the database can hold
            f"{self.name}: every {self.interval_ms} ms, {self.anchor} "
            f"{text['start']} s to {text['end']} s"
        )

    def clean(self) -> None:
        if (
            self.start_offset_s is not None
            and self.end_offset_s is not None
            and self.end_offset_s <= self.start_offset_s
        ):
            raise ValidationError({"end_offset_s": gettext("The window must end after it starts.")})
