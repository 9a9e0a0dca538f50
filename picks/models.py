"""Picks: what strategies want bought or sold, the sources that send them, and the router's gate
settings."""

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _
from limits import parse_many

from execution.models import OrderIntent, Side
from market.calendar import Venue
from market.models import symbol_validator


def _rate_validator(value: str) -> None:
    """A rate in the `limits` package's notation, e.g. "100/second" or "20 per minute"."""

    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1:
        raise ValidationError(
            gettext("Write one rate such as 100/second, 20/minute or 1000 per hour."),
            code="invalid_rate",
        )


# A source's code, as the admin and `manage.py picks_source` save it.
SOURCE_CODE_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"


def default_rate_limit() -> str:
    """A new source's rate (settings.PICKS_DEFAULT_RATE_LIMIT): within KIS's budget."""

    return settings.PICKS_DEFAULT_RATE_LIMIT


class PickSource(models.Model):
    """A strategy allowed to send picks: its token (only its SHA-256 is kept), its rate, and the
    exit profile its entries are watched with."""

    # Words other catalogues translate otherwise (a stock's code, a price's source, a user's
    # "active") carry a context of their own.
    code = models.CharField(
        pgettext_lazy("pick source", "code"),
        max_length=32,
        unique=True,
        validators=[RegexValidator(SOURCE_CODE_PATTERN)],
        help_text=_("Strategy id as sent in each pick, e.g. 3001."),
    )
    name = models.CharField(_("name"), max_length=64, blank=True)
    active = models.BooleanField(
        pgettext_lazy("pick source", "active"),
        default=True,
        help_text=_("An inactive source is refused (403)."),
    )
    token_sha256 = models.CharField(
        _("token sha256"),
        max_length=64,
        blank=True,
        editable=False,
        help_text=_("SHA-256 of the source's API token; the token itself is never stored."),
    )
    require_hmac = models.BooleanField(
        _("require hmac"),
        default=False,
        help_text=_(
            "Also require an HMAC-SHA256 of the body, keyed by the secret in the environment "
            "named AEGIS_PICKS_HMAC_ and the source's code in capitals (e.g. "
            "AEGIS_PICKS_HMAC_3001; characters other than letters and digits become _)."
        ),
    )
    rate_limit = models.CharField(
        _("rate limit"),
        max_length=32,
        default=default_rate_limit,
        validators=[_rate_validator],
        help_text=_(
            "Most picks this source may send, e.g. 5/second (429 beyond it). Each routed pick "
            "costs two or three of KIS's requests (about 20 a second)."
        ),
    )
    exit_profile = models.ForeignKey(
        "trading.ExitProfile",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="pick_sources",
        verbose_name=_("exit profile"),
        help_text=_("The exit profile its entries are watched with."),
    )
    entry_venue = models.CharField(
        _("entry venue"),
        max_length=3,
        choices=[(v.value, v.value) for v in Venue],
        default=Venue.KRX.value,
        db_default=Venue.KRX.value,
        help_text=_(
            "Where its entries are sent: KRX, Nextrade (NXT) or KIS's smart order routing "
            "(SOR), as limit orders."
        ),
    )
    created_at = models.DateTimeField(pgettext_lazy("pick source", "created at"), auto_now_add=True)

    # The digest stored before a save, set by picks/signals.py's pre_save (absent otherwise).
    _stored_digest: str | None

    class Meta:
        verbose_name = _("pick source")
        verbose_name_plural = _("pick sources")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(entry_venue__in=[v.value for v in Venue]),
                name="pick_source_entry_venue_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}".strip()


def _krw(**kwargs):
    return models.BigIntegerField(validators=[MinValueValidator(0)], **kwargs)


def _pct(maximum: str, **kwargs):
    return models.DecimalField(
        max_digits=6,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal(maximum))],
        **kwargs,
    )


class GateSettings(models.Model):
    """The router's three gates, one row (pk 1), editable in the admin; read fresh per route."""

    # Gate 1: validity
    max_pick_age_s = models.PositiveIntegerField(
        _("max pick age s"),
        default=30,
        validators=[MinValueValidator(1)],
        help_text=_("A pick generated longer ago than this is stale."),
    )
    entry_cutoff = models.TimeField(
        _("entry cutoff"),
        default=dt.time(15, 15),
        help_text=_("No new entries after this time of day (Asia/Seoul); the session opens 09:00."),
    )
    # Gate 2: risk
    max_open_positions = models.PositiveIntegerField(_("max open positions"), default=20)
    max_symbol_exposure_krw = _krw(
        verbose_name=_("max symbol exposure krw"),
        default=20_000_000,
        help_text=_("Most KRW held and being bought in one symbol."),
    )
    max_total_exposure_krw = _krw(
        verbose_name=_("max total exposure krw"),
        default=200_000_000,
        help_text=_("Most KRW held and being bought in all symbols."),
    )
    daily_loss_limit_krw = _krw(
        verbose_name=_("daily loss limit krw"),
        default=5_000_000,
        help_text=_("No new entries once today's realised loss reaches it."),
    )
    min_cash_krw = _krw(
        verbose_name=_("min cash krw"),
        default=0,
        help_text=_("Cash kept aside, never spent on entries."),
    )
    # Gate 3: price
    max_price_age_s = models.PositiveIntegerField(
        _("max price age s"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("The symbol's last trade must be at most this old."),
    )
    max_spread_pct = _pct(
        "30",
        verbose_name=_("max spread pct"),
        default=Decimal("1.00"),
        # xgettext:no-python-format ("% of" is no placeholder)
        help_text=_("Widest ask−bid spread, as a % of the bid."),
    )
    limit_up_guard_pct = _pct(
        "30",
        verbose_name=_("limit up guard pct"),
        default=Decimal("2.00"),
        # xgettext:no-python-format ("% of" is no placeholder)
        help_text=_("Refuse when the price is within this % of the upper limit."),
    )
    max_deviation_pct = _pct(
        "30",
        verbose_name=_("max deviation pct"),
        default=Decimal("2.00"),
        help_text=_(
            # xgettext:no-python-format ("% from" is no placeholder)
            "Refuse when the price has moved more than this % from the pick's limit price."
        ),
    )
    entry_slippage_pct = _pct(
        "10",
        verbose_name=_("entry slippage pct"),
        default=Decimal("0.50"),
        help_text=_(
            "Without a limit price, bid this % above the last trade (on the tick grid, at most "
            "the upper limit)."
        ),
    )
    # Fallback
    sweep_after_s = models.PositiveIntegerField(
        _("sweep after s"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("The sweep routes picks still NEW this long after they arrived."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # Moved on by every routed pick, under this row's lock: an account read outside the lock
    # holds for the decision when the sequence it read is still the row's (picks/routing.py).
    routed_seq = models.BigIntegerField(
        _("routed seq"),
        default=0,
        editable=False,
        help_text=_("Picks routed so far; a router's account read holds while it stands."),
    )

    class Meta:
        verbose_name = verbose_name_plural = _("gate settings")
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="gate_settings_single_row"),
        ]

    def __str__(self) -> str:
        return gettext("Gate settings")

    @classmethod
    def current(cls) -> "GateSettings":
        return cls.objects.get_or_create(pk=1)[0]


class Pick(models.Model):
    class Status(models.TextChoices):
        NEW = "NEW", pgettext_lazy("pick status", "New")
        ROUTED = "ROUTED", pgettext_lazy("pick status", "Routed")
        REJECTED = "REJECTED", pgettext_lazy("pick status", "Rejected")

    class Gate(models.IntegerChoices):
        VALIDITY = 1, _("1 validity")
        RISK = 2, _("2 risk")
        PRICE = 3, _("3 price")

    class RoutedBy(models.TextChoices):
        EVENT = "EVENT", _("On ingest")
        SWEEP = "SWEEP", _("Orphan sweep")

    source = models.ForeignKey(
        PickSource,
        to_field="code",
        db_column="source",
        on_delete=models.PROTECT,
        related_name="picks",
        verbose_name=pgettext_lazy("pick", "source"),
        help_text=_("Strategy id, e.g. 3001."),
    )
    external_id = models.CharField(_("external id"), max_length=128)
    symbol = models.CharField(_("symbol"), max_length=6, validators=[symbol_validator])
    side = models.CharField(_("side"), max_length=4, choices=Side.choices, default=Side.BUY)
    qty = models.BigIntegerField(_("qty"), null=True, blank=True)
    budget_krw = models.BigIntegerField(_("budget krw"), null=True, blank=True)
    limit_price = models.BigIntegerField(_("limit price"), null=True, blank=True)
    score = models.DecimalField(
        pgettext_lazy("pick", "score"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    generated_at = models.DateTimeField(_("generated at"))
    received_at = models.DateTimeField(_("received at"))
    status = models.CharField(
        pgettext_lazy("pick", "status"), max_length=8, choices=Status.choices, default=Status.NEW
    )
    rejected_gate = models.PositiveSmallIntegerField(
        _("rejected gate"), choices=Gate.choices, null=True, blank=True
    )
    reject_reason = models.CharField(_("reject reason"), max_length=255, blank=True)
    routed_at = models.DateTimeField(_("routed at"), null=True, blank=True)
    routed_by = models.CharField(_("routed by"), max_length=5, choices=RoutedBy.choices, blank=True)
    intent = models.ForeignKey(
        OrderIntent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="picks",
        verbose_name=_("intent"),
    )

    class Meta:
        verbose_name = _("pick")
        verbose_name_plural = _("picks")
        indexes = [models.Index(fields=["status", "received_at"], name="pick_status_received")]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="pick_source_external_id"
            ),
            models.CheckConstraint(
                condition=(Q(qty__isnull=False, qty__gt=0, budget_krw__isnull=True))
                | (Q(qty__isnull=True, budget_krw__isnull=False, budget_krw__gt=0)),
                name="pick_qty_xor_budget",
            ),
            models.CheckConstraint(
                condition=Q(limit_price__isnull=True) | Q(limit_price__gt=0),
                name="pick_limit_price_positive",
            ),
            models.CheckConstraint(condition=Q(side__in=["BUY", "SELL"]), name="pick_side_valid"),
            models.CheckConstraint(
                condition=Q(rejected_gate__isnull=True) | Q(rejected_gate__in=[1, 2, 3]),
                name="pick_rejected_gate_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    status="NEW",
                    routed_at__isnull=True,
                    intent__isnull=True,
                    rejected_gate__isnull=True,
                )
                | Q(
                    status="ROUTED",
                    routed_at__isnull=False,
                    intent__isnull=False,
                    rejected_gate__isnull=True,
                )
                | Q(
                    status="REJECTED",
                    routed_at__isnull=False,
                    intent__isnull=True,
                    rejected_gate__isnull=False,
                ),
                name="pick_status_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}/{self.external_id} {self.side} {self.symbol}"


class PositionOpener(models.Model):
    """The source whose BUY pick opened a position (the first to buy into it; a position opened
    otherwise has none). Only that source's SELL picks may sell the position: a strategy
    sells what it bought, never another's holding, nor one an operator opened."""

    position = models.OneToOneField(
        "execution.Position",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="opener",
        verbose_name=_("position"),
    )
    source = models.ForeignKey(
        PickSource,
        to_field="code",
        db_column="source",
        on_delete=models.PROTECT,
        related_name="positions_opened",
        verbose_name=pgettext_lazy("pick", "source"),
    )
    opened_at = models.DateTimeField(_("opened at"))

    class Meta:
        verbose_name = _("position opener")
        verbose_name_plural = _("position openers")

    def __str__(self) -> str:
        return gettext("position %(position)s opened by %(source)s") % {
            "position": self.position_id,
            "source": self.source_id,
        }
