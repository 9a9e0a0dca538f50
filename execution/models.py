"""The position ledger: positions, the intents that want to change them, the broker orders that do,
and the fills that did.

Invariant I1 lives in `Position.reserved_qty`: the qty held back by open SELL orders (their
unfilled remainder) and by SELL intents not yet turned into orders. Every change to it happens
under the position's row lock (execution.services.ledger), and the database refuses any row where
it would exceed the position's qty, so even a bug elsewhere cannot oversell.
"""

import datetime as dt
import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from market.calendar import Venue
from market.krx import SYMBOL_PATTERN
from market.models import symbol_validator


class Side(models.TextChoices):
    BUY = "BUY", _("Buy")
    SELL = "SELL", _("Sell")


def venue_field() -> models.CharField:
    """Where an order goes (market.calendar.Venue: KIS's exchange division), KRX unless said
    otherwise; a database default too, for the statements that insert in raw SQL."""
    return models.CharField(
        _("venue"),
        max_length=3,
        choices=[(v.value, v.value) for v in Venue],
        default=Venue.KRX.value,
        db_default=Venue.KRX.value,
        help_text=_("KRX, NXT (Nextrade) or SOR (KIS's smart order routing)."),
    )


VENUE_VALID = Q(venue__in=[v.value for v in Venue])


class TradingState(models.Model):
    """The global kill switch: a single row (pk=1)."""

    class State(models.TextChoices):
        ACTIVE = "ACTIVE", _("Active: entries and exits")
        REDUCING = "REDUCING", _("Reducing: exits only")
        HALTED = "HALTED", _("Halted: nothing new goes out")

    SINGLETON_PK = 1

    id = models.PositiveSmallIntegerField(
        _("id"), primary_key=True, default=SINGLETON_PK, editable=False
    )
    state = models.CharField(_("state"), max_length=8, choices=State.choices, default=State.ACTIVE)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    changed_by = models.CharField(_("changed by"), max_length=150, blank=True)
    changed_at = models.DateTimeField(_("changed at"), null=True, blank=True)
    # The startup gate (I4b): set when the system starts (`manage.py reconcile --startup`);
    # until a reconciliation with KIS succeeds after it, nothing goes out, whatever `state` says.
    reconcile_required_since = models.DateTimeField(
        _("reconcile required since"), null=True, blank=True
    )
    reconciled_at = models.DateTimeField(
        _("reconciled at"),
        null=True,
        blank=True,
        help_text=_("When a reconciliation with KIS last succeeded."),
    )
    # KIS last refused an order as out of its market hours (or not a market day): the exit
    # engine decides nothing more until the next phase where its orders trade begins after it
    # (trading/services.py), so a calendar that is wrong about today costs one refusal per
    # phase, not one per pass.
    market_closed_at = models.DateTimeField(
        _("market closed at"),
        null=True,
        blank=True,
        help_text=_("When KIS last refused an order as out of market hours (Aegis's clock)."),
    )
    market_closed_reason = models.CharField(
        _("market closed reason"), max_length=255, blank=True, default="", db_default=""
    )
    # The last trading day whose end the ledger has done (services/day_end.py).
    day_ended_for = models.DateField(
        _("day ended for"),
        null=True,
        blank=True,
        help_text=_("The last trading day whose day orders were ended."),
    )

    class Meta:
        verbose_name = _("trading state")
        verbose_name_plural = _("trading states")
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="trading_state_singleton"),
            models.CheckConstraint(
                condition=Q(state__in=["ACTIVE", "REDUCING", "HALTED"]),
                name="trading_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return gettext("Trading %(state)s") % {"state": self.state}

    @property
    def awaiting_reconciliation(self) -> bool:
        since = self.reconcile_required_since
        return since is not None and (self.reconciled_at is None or self.reconciled_at < since)

    @property
    def in_force(self) -> str:
        """The state in force: the one set, or HALTED while the startup gate waits."""
        return self.State.HALTED if self.awaiting_reconciliation else self.state


class Position(models.Model):
    class Status(models.TextChoices):
        OPEN = "OPEN", _("Open")
        CLOSED = "CLOSED", _("Closed")

    symbol = models.CharField(
        _("symbol"), max_length=6, validators=[symbol_validator], db_index=True
    )
    status = models.CharField(
        _("status"), max_length=6, choices=Status.choices, default=Status.OPEN
    )
    qty = models.BigIntegerField(_("qty"), default=0, help_text=_("Shares held."))
    reserved_qty = models.BigIntegerField(
        _("reserved qty"),
        default=0,
        help_text=_("Shares held back by open SELL orders and SELL intents not yet ordered."),
    )
    avg_price = models.DecimalField(
        _("avg price"),
        max_digits=20,
        decimal_places=4,
        default=0,
        help_text=_("Average purchase price, KRW."),
    )
    realized_pnl = models.DecimalField(
        _("realized pnl"),
        max_digits=24,
        decimal_places=4,
        default=0,
        help_text=_("Realised profit and loss against the average cost, KRW, before costs."),
    )
    costs = models.BigIntegerField(
        _("costs"),
        default=0,
        db_default=0,
        help_text=_(
            "Broker fees and transaction tax on its fills, KRW: realised P&L net of costs is "
            "realized_pnl − costs."
        ),
    )
    opened_at = models.DateTimeField(_("opened at"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    broker_qty = models.BigIntegerField(
        _("broker qty"),
        null=True,
        blank=True,
        help_text=_(
            "KIS's holding when the last reconciliation found it different from qty; empty when "
            "they agreed. While set, every sell first asks KIS what is orderable."
        ),
    )

    class Meta:
        verbose_name = _("position")
        verbose_name_plural = _("positions")
        constraints = [
            models.CheckConstraint(condition=Q(qty__gte=0), name="position_qty_non_negative"),
            models.CheckConstraint(
                condition=Q(reserved_qty__gte=0) & Q(reserved_qty__lte=F("qty")),
                name="position_reserved_within_qty",
            ),
            models.CheckConstraint(
                condition=Q(avg_price__gte=0), name="position_avg_price_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(symbol__regex=SYMBOL_PATTERN), name="position_symbol_format"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["OPEN", "CLOSED"]), name="position_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="OPEN") | Q(qty=0, reserved_qty=0),
                name="position_closed_is_flat",
            ),
            models.UniqueConstraint(
                fields=["symbol"],
                condition=Q(status="OPEN"),
                name="position_one_open_per_symbol",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} ×{self.qty} ({self.status})"

    @property
    def available_qty(self) -> int:
        return self.qty - self.reserved_qty


class IntentType(models.TextChoices):
    ENTRY = "ENTRY", _("Entry")
    EXIT_STOP_LOSS = "EXIT_STOP_LOSS", _("Exit: stop loss")
    EXIT_TAKE_PROFIT = "EXIT_TAKE_PROFIT", _("Exit: take profit")
    EXIT_TRAILING = "EXIT_TRAILING", _("Exit: trailing stop")
    EXIT_TIME = "EXIT_TIME", _("Exit: time")
    EXIT_MAX_HOLD = "EXIT_MAX_HOLD", _("Exit: maximum holding days")
    GAP_DOWN = "GAP_DOWN", _("Exit: gap down")
    FLATTEN = "FLATTEN", _("Flatten")
    MANUAL = "MANUAL", _("Manual")


# Intent types that reduce a position. MANUAL may go either way: its side says which.
EXIT_INTENT_TYPES = frozenset(
    {
        IntentType.EXIT_STOP_LOSS,
        IntentType.EXIT_TAKE_PROFIT,
        IntentType.EXIT_TRAILING,
        IntentType.EXIT_TIME,
        IntentType.EXIT_MAX_HOLD,
        IntentType.GAP_DOWN,
        IntentType.FLATTEN,
        IntentType.MANUAL,
    }
)


class OrderIntent(models.Model):
    """A decision to trade, before it is a broker order. A NEW SELL intent reserves its qty."""

    class Status(models.TextChoices):
        NEW = "NEW", _("New")
        ORDERED = "ORDERED", _("Ordered")
        CANCELLED = "CANCELLED", _("Cancelled")
        REJECTED = "REJECTED", _("Rejected")

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    intent_type = models.CharField(_("intent type"), max_length=16, choices=IntentType.choices)
    side = models.CharField(_("side"), max_length=4, choices=Side.choices)
    position = models.ForeignKey(
        Position, on_delete=models.PROTECT, related_name="intents", verbose_name=_("position")
    )
    # Denormalised from the position so outside writers and the NOTIFY payload need no join.
    symbol = models.CharField(_("symbol"), max_length=6, validators=[symbol_validator])
    venue = venue_field()
    qty = models.BigIntegerField(_("qty"))
    limit_price = models.BigIntegerField(
        _("limit price"), null=True, blank=True, help_text=_("KRW; empty for a market order.")
    )
    status = models.CharField(_("status"), max_length=9, choices=Status.choices, default=Status.NEW)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=128, unique=True)
    # Its own context: market's "event at" is a trade's time at the exchange.
    event_at = models.DateTimeField(
        pgettext_lazy("intent", "event at"), help_text=_("When the triggering event happened.")
    )
    trigger_price = models.BigIntegerField(
        _("trigger price"),
        null=True,
        blank=True,
        help_text=_("KRW; the price that fired the rule (exits)."),
    )
    created_at = models.DateTimeField(_("created at"), help_text=_("When the intent was written."))
    ordered_at = models.DateTimeField(
        _("ordered at"),
        null=True,
        blank=True,
        help_text=_("When its order went out to the broker."),
    )
    closed_reason = models.CharField(_("closed reason"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("order intent")
        verbose_name_plural = _("order intents")
        indexes = [models.Index(fields=["status", "created_at"], name="intent_status_created")]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="intent_qty_positive"),
            models.CheckConstraint(
                condition=Q(limit_price__isnull=True) | Q(limit_price__gt=0),
                name="intent_limit_price_positive",
            ),
            models.CheckConstraint(condition=Q(side__in=["BUY", "SELL"]), name="intent_side_valid"),
            models.CheckConstraint(condition=VENUE_VALID, name="intent_venue_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["NEW", "ORDERED", "CANCELLED", "REJECTED"]),
                name="intent_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(intent_type="ENTRY") | Q(side="BUY"), name="intent_entry_is_buy"
            ),
            models.CheckConstraint(
                condition=Q(intent_type__in=["ENTRY", "MANUAL"]) | Q(side="SELL"),
                name="intent_exit_is_sell",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.intent_type} {self.side} {self.symbol} ×{self.qty} ({self.status})"


class Order(models.Model):
    """A broker order. Recorded before the broker is called (I4); `id` is our own order id."""

    class Status(models.TextChoices):
        NEW = "NEW", _("New")
        SUBMITTED = "SUBMITTED", _("Submitted")
        PARTIAL_FILLED = "PARTIAL_FILLED", _("Partially filled")
        FILLED = "FILLED", _("Filled")
        CANCELLED = "CANCELLED", _("Cancelled")
        REJECTED = "REJECTED", _("Rejected")

    OPEN_STATUSES = (Status.NEW, Status.SUBMITTED, Status.PARTIAL_FILLED)

    id = models.UUIDField(_("id"), primary_key=True, default=uuid.uuid4, editable=False)
    intent = models.ForeignKey(
        OrderIntent,
        on_delete=models.PROTECT,
        related_name="orders",
        null=True,
        blank=True,
        verbose_name=_("intent"),
    )
    position = models.ForeignKey(
        Position, on_delete=models.PROTECT, related_name="orders", verbose_name=_("position")
    )
    symbol = models.CharField(_("symbol"), max_length=6, validators=[symbol_validator])
    side = models.CharField(_("side"), max_length=4, choices=Side.choices)
    venue = venue_field()
    qty = models.BigIntegerField(_("qty"))
    filled_qty = models.BigIntegerField(_("filled qty"), default=0)
    limit_price = models.BigIntegerField(
        _("limit price"), null=True, blank=True, help_text=_("KRW; empty for a market order.")
    )
    status = models.CharField(
        _("status"), max_length=14, choices=Status.choices, default=Status.NEW
    )
    broker_order_no = models.CharField(_("broker order no"), max_length=32, null=True, blank=True)
    broker_org_no = models.CharField(_("broker org no"), max_length=16, blank=True)
    # KIS order numbers (ODNO) are unique within an account and a trading day.
    trade_date = models.DateField(_("trade date"), null=True, blank=True)
    reject_reason = models.CharField(_("reject reason"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"))
    # When the row was written, on the database's clock (shared by every host): how old a
    # queued payload of it is, whatever the clock of the process that recorded it.
    recorded_at = models.DateTimeField(_("recorded at"), db_default=Now(), editable=False)
    # Set, and committed, just before the broker is called: a NEW order with this set may have
    # reached KIS, so it is settled against the daily orders inquiry, never resent blindly (I4).
    send_started_at = models.DateTimeField(_("send started at"), null=True, blank=True)
    # The database's clock (the one every host shares) after which the send claimed at
    # send_started_at can no longer reach KIS: its connect and read timeouts and a margin.
    # A daily inquiry begun after it that shows no such order proves the send never arrived.
    send_deadline = models.DateTimeField(_("send deadline"), null=True, blank=True)
    # Database defaults too: the intent statements insert orders in raw SQL.
    send_attempts = models.PositiveIntegerField(
        _("send attempts"),
        default=0,
        db_default=0,
        help_text=_("How many times the right to send was taken (each a broker write)."),
    )
    # An order whose broker record this ledger cannot apply (a malformed answer, a fill that
    # breaks an invariant): left alone by the syncs until a person looks (alerted).
    quarantined_at = models.DateTimeField(_("quarantined at"), null=True, blank=True)
    quarantine_reason = models.TextField(
        _("quarantine reason"), blank=True, default="", db_default=""
    )
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    # Its intent's, read along by order_mark_submitted's one-statement path (the raw query's
    # extra columns); absent on an order loaded otherwise.
    intent_kind: str
    intent_created_at: dt.datetime
    intent_event_at: dt.datetime

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        indexes = [models.Index(fields=["status", "created_at"], name="order_status_created")]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="order_qty_positive"),
            models.CheckConstraint(condition=VENUE_VALID, name="order_venue_valid"),
            models.CheckConstraint(
                condition=Q(filled_qty__gte=0) & Q(filled_qty__lte=F("qty")),
                name="order_filled_within_qty",
            ),
            models.CheckConstraint(
                condition=~Q(status="FILLED") | Q(filled_qty=F("qty")),
                name="order_filled_is_complete",
            ),
            models.CheckConstraint(
                condition=Q(limit_price__isnull=True) | Q(limit_price__gt=0),
                name="order_limit_price_positive",
            ),
            models.CheckConstraint(condition=Q(side__in=["BUY", "SELL"]), name="order_side_valid"),
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "NEW",
                        "SUBMITTED",
                        "PARTIAL_FILLED",
                        "FILLED",
                        "CANCELLED",
                        "REJECTED",
                    ]
                ),
                name="order_status_valid",
            ),
            models.UniqueConstraint(
                fields=["trade_date", "broker_order_no"],
                name="order_broker_order_no_unique",
                condition=Q(broker_order_no__isnull=False),
            ),
            # At most one open order per intent, whoever writes it.
            models.UniqueConstraint(
                fields=["intent"],
                name="order_one_open_per_intent",
                condition=Q(status__in=["NEW", "SUBMITTED", "PARTIAL_FILLED"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.symbol} {self.filled_qty}/{self.qty} ({self.status})"

    @property
    def remaining_qty(self) -> int:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class Fill(models.Model):
    """One execution reported by the broker. `broker_fill_key` makes a repeated notice a no-op."""

    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="fills", verbose_name=_("order")
    )
    broker_fill_key = models.CharField(_("broker fill key"), max_length=128, unique=True)
    qty = models.BigIntegerField(_("qty"))
    # Its own context: market's "price" is the last price, this one a fill's.
    price = models.BigIntegerField(
        pgettext_lazy("fill", "price"),
        help_text=_("KRW per share (the average when several trades)."),
    )
    # Exact KRW of the fill: one catch-up to the broker's cumulative figures may cover several
    # trades at different prices, which a per-share integer price cannot carry exactly.
    amount = models.BigIntegerField(_("amount"), default=0)
    realized_pnl = models.DecimalField(
        _("realized pnl"),
        max_digits=20,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("A sell's KRW gain (loss below zero) against the average cost; empty on buys."),
    )
    fee = models.BigIntegerField(
        _("fee"), default=0, db_default=0, help_text=_("The broker's fee on this fill, KRW.")
    )
    tax = models.BigIntegerField(
        _("tax"),
        default=0,
        db_default=0,
        help_text=_("Transaction tax on this fill (a sell's), KRW."),
    )
    filled_at = models.DateTimeField(_("filled at"))
    recorded_at = models.DateTimeField(_("recorded at"))

    class Meta:
        verbose_name = _("fill")
        verbose_name_plural = _("fills")
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="fill_qty_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="fill_price_positive"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="fill_amount_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0, tax__gte=0), name="fill_costs"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} @ {self.price}"


class BrokerCredential(models.Model):
    """A KIS access token or WebSocket approval key, kept so that losing Redis does not mean
    asking KIS for a new one (KIS issues one a minute per app). The value is encrypted with a key
    derived from the app's secret, which lives only in the environment: a database dump alone
    does not yield a usable token.
    """

    kind = models.CharField(_("kind"), max_length=16)
    app_fingerprint = models.CharField(_("app fingerprint"), max_length=12)
    sealed_value = models.TextField(_("sealed value"))
    expires_at = models.DateTimeField(_("expires at"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("broker credential")
        verbose_name_plural = _("broker credentials")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "app_fingerprint"], name="broker_credential_one_per_app"
            ),
        ]

    def __str__(self) -> str:
        return gettext("%(kind)s for app %(app)s (until %(until)s)") % {
            "kind": self.kind,
            "app": self.app_fingerprint,
            "until": f"{self.expires_at:%Y-%m-%d %H:%M}",
        }


class Reconciliation(models.Model):
    """One comparison of the ledger's open positions with KIS's holdings."""

    class Trigger(models.TextChoices):
        STARTUP = "STARTUP", _("Startup")
        PERIODIC = "PERIODIC", _("Periodic")
        MANUAL = "MANUAL", _("Manual")
        DAY_END = "DAY_END", _("Day end")

    class Result(models.TextChoices):
        MATCHED = "MATCHED", _("Matched")
        MISMATCH = "MISMATCH", _("Mismatch")
        FAILED = "FAILED", _("Failed (KIS could not be read)")

    trigger = models.CharField(_("trigger"), max_length=8, choices=Trigger.choices)
    result = models.CharField(_("result"), max_length=8, choices=Result.choices)
    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"))
    symbols_checked = models.PositiveIntegerField(_("symbols checked"), default=0)
    cash_krw = models.BigIntegerField(
        _("cash krw"),
        null=True,
        blank=True,
        help_text=_(
            "KIS's D+2 deposit (prvs_rcdl_excc_amt) at this run: the start-of-day deposit with "
            "the day's trades settled."
        ),
    )
    symbols_skipped = models.JSONField(
        _("symbols skipped"),
        default=list,
        blank=True,
        help_text=_("Symbols with orders still on their way at KIS: compared next time."),
    )
    unknown_orders = models.JSONField(
        _("unknown orders"),
        default=list,
        blank=True,
        help_text=_("Orders at KIS today that the ledger does not know (placed outside Aegis?)."),
    )
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("reconciliation")
        verbose_name_plural = _("reconciliations")
        indexes = [models.Index(fields=["-started_at"], name="reconciliation_recent")]

    def __str__(self) -> str:
        return gettext("%(trigger)s reconciliation %(at)s: %(result)s") % {
            "trigger": self.trigger,
            "at": f"{self.started_at:%Y-%m-%d %H:%M:%S}",
            "result": self.result,
        }


class ReconciliationMismatch(models.Model):
    reconciliation = models.ForeignKey(
        Reconciliation,
        on_delete=models.CASCADE,
        related_name="mismatches",
        verbose_name=_("reconciliation"),
    )
    symbol = models.CharField(_("symbol"), max_length=6)
    position = models.ForeignKey(
        Position,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mismatches",
        verbose_name=_("position"),
    )
    ledger_qty = models.BigIntegerField(_("ledger qty"))
    broker_qty = models.BigIntegerField(_("broker qty"))
    broker_orderable_qty = models.BigIntegerField(_("broker orderable qty"))
    ledger_avg_price = models.DecimalField(
        _("ledger avg price"), max_digits=20, decimal_places=4, null=True
    )
    broker_avg_price = models.DecimalField(
        _("broker avg price"), max_digits=20, decimal_places=4, null=True
    )

    class Meta:
        verbose_name = _("reconciliation mismatch")
        verbose_name_plural = _("reconciliation mismatchs")

    def __str__(self) -> str:
        return gettext("%(symbol)s: ledger %(ledger)s, KIS %(broker)s") % {
            "symbol": self.symbol,
            "ledger": self.ledger_qty,
            "broker": self.broker_qty,
        }


class Alert(models.Model):
    """Something a person must know: a circuit breaker's change of state, a reconciliation
    mismatch, a flatten decision, prices gone stale. Recorded once (its key), then sent to every
    configured channel (execution/alerts.py), each delivery's outcome kept here."""

    class Severity(models.TextChoices):
        INFO = "INFO", _("Info")
        WARNING = "WARNING", _("Warning")
        CRITICAL = "CRITICAL", _("Critical")

    class Kind(models.TextChoices):
        BREAKER = "BREAKER", _("KIS circuit breaker")
        RECONCILIATION = "RECONCILIATION", _("Reconciliation mismatch")
        FLATTEN = "FLATTEN", _("Emergency flatten")
        PRICES = "PRICES", _("Prices stale")
        CREDENTIALS = "CREDENTIALS", _("KIS credentials refused")
        ORDER = "ORDER", _("Order outcome needs a person")
        LEDGER = "LEDGER", _("Ledger audit drift")
        QUARANTINE = "QUARANTINE", _("Broker record quarantined")
        STREAM = "STREAM", _("KIS stream down")
        EXIT = "EXIT", _("Exit waits or may not fill")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    severity = models.CharField(_("severity"), max_length=8, choices=Severity.choices)
    subject = models.CharField(
        _("subject"), max_length=64, blank=True, help_text=_("e.g. kis-order")
    )
    state = models.CharField(
        _("state"),
        max_length=16,
        blank=True,
        help_text=_("A breaker's new state: closed, open, half-open."),
    )
    message = models.TextField(_("message"))
    key = models.CharField(
        _("key"),
        max_length=200,
        unique=True,
        help_text=_("Names the event: a second report of it records nothing."),
    )
    created_at = models.DateTimeField(_("created at"))
    deliveries = models.JSONField(
        _("deliveries"),
        default=dict,
        blank=True,
        help_text=_("Each channel's outcome: sent, or the error."),
    )

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "subject", "-created_at"], name="alert_recent")]

    def __str__(self) -> str:
        return f"{self.severity} {self.kind} {self.subject} {self.state}".strip()


class Notification(models.Model):
    """One message to one channel, in the outbox (execution/notify/): written in the transaction
    of the event it tells of (a fill, an exit, a refused pick, the day's close, an alert), so an
    event rolled back tells nothing, then delivered by whichever deliverer claims it first
    (FOR UPDATE SKIP LOCKED), retried with backoff while its channel fails. `event_key` names
    the event: a second report of it writes no second row."""

    class Kind(models.TextChoices):
        FILL = "fill", _("Fill")
        EXIT = "exit", _("Exit decided")
        REFUSALS = "refusals", _("Pick refused (sent summed up)")
        CLOSE = "close", _("Day's close")
        ALERT = "alert", _("Alert")

    class Status(models.TextChoices):
        PENDING = "PENDING", _("Pending")
        SENT = "SENT", _("Sent")
        FAILED = "FAILED", _("Failed (given up)")

    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    channel = models.CharField(
        _("channel"), max_length=8, help_text=_("slack, email, sms or telegram.")
    )
    event_key = models.CharField(_("event key"), max_length=255)
    text = models.TextField(_("text"))
    status = models.CharField(
        _("status"),
        max_length=7,
        choices=Status.choices,
        default=Status.PENDING,
        db_default="PENDING",
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0, db_default=0)
    next_attempt_at = models.DateTimeField(
        _("next attempt at"), help_text=_("Not sent before this.")
    )
    created_at = models.DateTimeField(_("created at"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.CharField(
        _("last error"),
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text=_("How the last send failed (an HTTP status, an error's type): never a URL."),
    )
    alert = models.ForeignKey(
        Alert,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
        verbose_name=_("alert"),
    )

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "event_key"], name="notification_one_per_event_and_channel"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "SENT", "FAILED"]),
                name="notification_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["fill", "exit", "refusals", "close", "alert"]),
                name="notification_kind_valid",
            ),
        ]
        indexes = [
            # The deliverer's claim: what is due now.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="PENDING"),
                name="notification_due",
            ),
            # Its pace: the channel's last message.
            models.Index(fields=["channel", "sent_at"], name="notification_sent"),
        ]

    def __str__(self) -> str:
        return gettext("%(kind)s to %(channel)s (%(status)s)") % {
            "kind": self.kind,
            "channel": self.channel,
            "status": self.status,
        }


class FlattenPolicy(models.Model):
    """The emergency-flatten policy (one row, pk 1), edited in the admin. When a trigger holds,
    a critical alert recommends flattening by hand in the MTS app; with auto_flatten on, Aegis
    also opens one FLATTEN intent per open position (sent when KIS answers again) and sets
    trading to REDUCING. Every decision is recorded as an alert."""

    enabled = models.BooleanField(_("enabled"), default=False)
    kis_down_minutes = models.PositiveIntegerField(
        _("kis down minutes"),
        default=5,
        validators=[MinValueValidator(1)],
        help_text=_("Trigger: KIS's order circuit open (or half-open) this long."),
    )
    on_prices_stale = models.BooleanField(
        _("on prices stale"),
        default=True,
        help_text=_("Trigger: every held symbol's price stale during the session."),
    )
    prices_stale_s = models.PositiveIntegerField(
        _("prices stale s"),
        default=120,
        validators=[MinValueValidator(10)],
        help_text=_("A price older than this, from any source, is stale."),
    )
    auto_flatten = models.BooleanField(
        _("auto flatten"),
        default=False,
        help_text=_("Sell every open position by itself (else: alert only)."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = _("flatten policy")
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="flatten_policy_single")]

    def __str__(self) -> str:
        return gettext("Flatten policy")

    @classmethod
    def current(cls) -> "FlattenPolicy":
        return cls.objects.get_or_create(pk=1)[0]
