"""The ledger in the admin. Every change a person makes here goes through a service, so the admin
can never write around the row locks: positions show their available and locked qty, intents and
orders are read-mostly, and the trading state is the kill switch.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, Count, F, IntegerField, OuterRef, Subquery, Sum, When
from django.http import HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _

from kis.errors import KisError
from market.symbols import with_names

from .admin_confirm import confirmation, confirmed
from .broker import get_broker
from .exceptions import LedgerError
from .exports import daily_pnl_csv, kst, trades_csv
from .models import (
    Alert,
    BrokerCredential,
    Fill,
    FlattenPolicy,
    Notification,
    Order,
    OrderIntent,
    Position,
    Reconciliation,
    ReconciliationMismatch,
    TradingState,
)
from .services import intent_cancel, position_flatten, trading_state_set
from .services.expiry import order_cancel_now
from .services.quarantine import order_release


class ReadOnlyAdminMixin:
    """Rows that only the ledger writes."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StockColumn:
    """A list's `stock` column: the code and, when known, the stock's name (005930 삼성전자),
    from the `symbol_name` its queryset annotates (market.symbols.with_names)."""

    @admin.display(description=_("symbol"), ordering="symbol")
    def stock(self, obj) -> str:
        name = getattr(obj, "symbol_name", None)
        return f"{obj.symbol} {name}" if name else obj.symbol


class OpenOrderInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Order
    verbose_name_plural = _("Open orders")
    fields = (
        "id",
        "side",
        "qty",
        "filled_qty",
        "limit_price",
        "status",
        "broker_order_no",
        "created_at",
    )
    readonly_fields = fields
    extra = 0
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status__in=Order.OPEN_STATUSES)


class NewIntentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderIntent
    verbose_name_plural = _("Intents waiting for an order")
    fields = ("id", "intent_type", "side", "qty", "limit_price", "reason", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=OrderIntent.Status.NEW)


@admin.register(Position)
class PositionAdmin(StockColumn, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "stock",
        "status",
        "qty",
        "locked",
        "available",
        "broker_qty",
        "avg_price_krw",
        "realized_pnl_krw",
        "costs",
        "opened_at",
    )
    list_filter = ("status", ("broker_qty", admin.EmptyFieldListFilter))
    search_fields = ("symbol",)
    ordering = ("status", "symbol")
    fields = (
        "symbol",
        "status",
        "qty",
        "locked",
        "available",
        "broker_qty",
        "avg_price_krw",
        "realized_pnl_krw",
        "costs",
        "opened_at",
        "closed_at",
        "updated_at",
        "history",
    )
    readonly_fields = fields
    inlines = [NewIntentInline, OpenOrderInline]
    actions = ["flatten"]

    def get_queryset(self, request):
        return with_names(super().get_queryset(request)).annotate(
            available_qty_db=F("qty") - F("reserved_qty")
        )

    @admin.display(description=_("locked qty"), ordering="reserved_qty")
    def locked(self, obj):
        return obj.reserved_qty

    @admin.display(description=_("available qty"), ordering="available_qty_db")
    def available(self, obj):
        return obj.available_qty

    @admin.display(description=_("average price (KRW)"), ordering="avg_price")
    def avg_price_krw(self, obj):
        return _krw(obj.avg_price)

    @admin.display(description=_("realised P&L before costs (KRW)"), ordering="realized_pnl")
    def realized_pnl_krw(self, obj):
        return _krw(obj.realized_pnl)

    @admin.display(description=_("history"))
    def history(self, obj):
        """Its story: every intent with its reason, each order it became, and their fills."""
        rows = []
        intents = obj.intents.order_by("created_at").prefetch_related("orders__fills")
        for intent in intents:
            fills = [f for order in intent.orders.all() for f in order.fills.all()]
            rows.append(
                (
                    kst(intent.created_at),
                    intent.intent_type,
                    intent.side,
                    intent.qty,
                    intent.status,
                    ", ".join(
                        f"{o.venue} {o.broker_order_no or '-'} {o.status}"
                        for o in intent.orders.all()
                    )
                    or "-",
                    ", ".join(f"{f.qty} @ {f.price:,} ({kst(f.filled_at)})" for f in fills) or "-",
                    intent.reason,
                )
            )
        if not rows:
            return "-"
        head = format_html(
            "<tr>{}</tr>",
            format_html_join(
                "",
                "<th>{}</th>",
                (
                    (pgettext("position history", "time"),),
                    (pgettext("position history", "intent"),),
                    (pgettext("position history", "side"),),
                    (pgettext("position history", "qty"),),
                    (pgettext("position history", "status"),),
                    (pgettext("position history", "orders"),),
                    (pgettext("position history", "fills"),),
                    (pgettext("position history", "why"),),
                ),
            ),
        )
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            ((format_html_join("", "<td>{}</td>", ((c,) for c in r)),) for r in rows),
        )
        return format_html("<table>{}{}</table>", head, body)

    @admin.action(
        description=_("Flatten: sell all available shares through the ledger"),
        permissions=["flatten"],
    )
    def flatten(self, request, queryset):
        closed = [p.symbol for p in queryset if p.status != Position.Status.OPEN]
        if closed:
            self.message_user(
                request,
                gettext("Closed, nothing to sell: %(symbols)s.") % {"symbols": ", ".join(closed)},
                messages.WARNING,
            )
        held = list(queryset.filter(status=Position.Status.OPEN))
        if not held:
            return None
        if not confirmed(request):
            return confirmation(
                self,
                request,
                action="flatten",
                title=gettext("Flatten"),
                explanation=gettext(
                    "Each position's available shares are sold at market through the ledger (an "
                    "intent, then its order); shares locked by live orders stay locked."
                ),
                items=[
                    (
                        p.pk,
                        gettext("%(symbol)s: %(available)s of %(qty)s available")
                        % {
                            "symbol": p.symbol,
                            "available": f"{p.available_qty:,}",
                            "qty": f"{p.qty:,}",
                        },
                    )
                    for p in held
                ],
                confirm=gettext("Yes, flatten"),
            )
        opened, refused = 0, []
        for position in held:
            try:
                position_flatten(position_id=position.pk, requested_by=request.user.get_username())
                opened += 1
            except LedgerError as exc:
                refused.append(f"{position.symbol}: {exc.translated()}")
        if opened:
            self.message_user(
                request,
                gettext(
                    "%(count)d flatten intent(s) opened: each goes out as its order once sent "
                    "(Order intents, then Orders, show where it stands)."
                )
                % {"count": opened},
                messages.SUCCESS,
            )
        for message in refused:
            self.message_user(request, message, messages.WARNING)
        return None

    def has_flatten_permission(self, request):
        return request.user.has_perm("execution.add_orderintent")


@admin.register(OrderIntent)
class OrderIntentAdmin(StockColumn, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "intent_type",
        "side",
        "stock",
        "venue",
        "qty",
        "limit_price",
        "status",
        "order_status",
        "reason",
    )
    list_filter = ("status", "intent_type", "side", "venue")
    search_fields = ("symbol", "idempotency_key", "id")
    date_hierarchy = "created_at"
    list_select_related = ("position",)
    actions = ["cancel"]

    def get_queryset(self, request):
        # The live ones (not yet ordered) on top, then the newest.
        last_order = Order.objects.filter(intent=OuterRef("pk")).order_by("-created_at")
        return _live_first(
            with_names(super().get_queryset(request)).annotate(
                order_status_db=Subquery(last_order.values("status")[:1])
            ),
            [OrderIntent.Status.NEW],
        )

    @admin.display(description=_("its order"), ordering="order_status_db")
    def order_status(self, obj):
        """What became of the intent's order (an ORDERED intent's order may be FILLED)."""
        status = getattr(obj, "order_status_db", None)
        return Order.Status(status).label if status else "-"

    @admin.action(
        description=_("Cancel: withdraw intents not yet ordered, releasing their shares"),
        permissions=["cancel"],
    )
    def cancel(self, request, queryset):
        done = 0
        for intent in queryset:
            try:
                intent_cancel(
                    intent_id=intent.pk, reason=f"cancelled by {request.user.get_username()}"
                )
                done += 1
            except LedgerError as exc:
                self.message_user(request, exc.translated(), messages.WARNING)
        if done:
            self.message_user(
                request,
                gettext("%(count)d intent(s) cancelled.") % {"count": done},
                messages.SUCCESS,
            )

    def has_cancel_permission(self, request):
        return request.user.has_perm("execution.add_orderintent")


def _krw(value) -> str:
    """KRW with thousands separators and no decimals."""
    return f"{value:,.0f}"


def _live_first(queryset, live_statuses: list):
    """The rows in `live_statuses` first, then the newest. The change list puts a column the
    person sorts by before this order, and keeps it after."""
    live = Case(When(status__in=live_statuses, then=1), default=0, output_field=IntegerField())
    return queryset.annotate(live=live).order_by("-live", "-created_at")


class FillInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Fill
    fields = ("broker_fill_key", "qty", "price", "fee", "tax", "filled_at", "recorded_at")
    readonly_fields = fields
    extra = 0


class QuarantinedFilter(admin.SimpleListFilter):
    """Orders whose broker record the syncs could not apply: they wait for a person."""

    title = _("quarantined")
    parameter_name = "quarantined"

    def lookups(self, request, model_admin):
        return (("yes", _("Quarantined")), ("no", _("Not quarantined")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(quarantined_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(quarantined_at__isnull=True)
        return queryset


@admin.register(Order)
class OrderAdmin(StockColumn, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "side",
        "stock",
        "venue",
        "qty",
        "filled_qty",
        "avg_fill_price",
        "limit_price",
        "status",
        "broker_order_no",
        "quarantined_at",
    )
    list_filter = ("status", "side", "venue", QuarantinedFilter)
    readonly_fields = ("quarantined_at", "quarantine_reason")
    search_fields = ("symbol", "broker_order_no", "id")
    date_hierarchy = "created_at"
    inlines = [FillInline]
    actions = ["release", "cancel_at_kis"]

    def get_queryset(self, request):
        # The orders in flight on top, then the newest.
        return _live_first(
            with_names(super().get_queryset(request)).annotate(
                filled_amount=Sum("fills__amount"), fills_qty=Sum("fills__qty")
            ),
            list(Order.OPEN_STATUSES),
        )

    @admin.display(description=_("average fill price (KRW)"))
    def avg_fill_price(self, obj):
        amount, qty = getattr(obj, "filled_amount", None), getattr(obj, "fills_qty", None)
        return _krw(amount / qty) if amount and qty else "-"

    @admin.action(
        description=_("Release from quarantine: the syncs take the order up again"),
        permissions=["release"],
    )
    def release(self, request, queryset):

        done = sum(
            order_release(order_id=o.pk, by=request.user.get_username())
            for o in queryset.filter(quarantined_at__isnull=False)
        )
        self.message_user(
            request,
            gettext("%(count)d order(s) released from quarantine.") % {"count": done},
            messages.SUCCESS if done else messages.WARNING,
        )

    def has_release_permission(self, request):
        return request.user.has_perm("execution.change_order")

    @admin.action(
        description=_("Cancel at KIS: the rest released on KIS's answer"),
        permissions=["release"],
    )
    def cancel_at_kis(self, request, queryset):
        live = list(
            queryset.filter(status__in=[Order.Status.SUBMITTED, Order.Status.PARTIAL_FILLED])
        )
        if not live:
            self.message_user(request, gettext("No live order selected."), messages.WARNING)
            return None
        if not confirmed(request):
            return confirmation(
                self,
                request,
                action="cancel_at_kis",
                title=gettext("Cancel at KIS"),
                explanation=gettext(
                    "KIS is asked to cancel these orders. What filled before is applied, and the "
                    "rest is released when KIS's daily orders show the cancel."
                ),
                items=[
                    (
                        o.pk,
                        gettext(
                            "%(symbol)s %(side)s %(qty)s @ %(price)s, %(filled)s filled, "
                            "KIS %(odno)s"
                        )
                        % {
                            "symbol": o.symbol,
                            "side": o.side,
                            "qty": o.qty,
                            "price": o.limit_price or pgettext("order price", "market"),
                            "filled": o.filled_qty,
                            "odno": o.broker_order_no,
                        },
                    )
                    for o in live
                ],
                # Its Korean stays on the English page too (tests/execution/test_admin_cancel.py).
                confirm=gettext("Yes, cancel them at KIS / 취소 요청"),
            )
        broker = get_broker()
        for order in live:
            try:
                after = order_cancel_now(
                    broker=broker, order_id=order.pk, by=request.user.get_username()
                )
            except (LedgerError, KisError) as exc:
                said = exc.translated() if isinstance(exc, LedgerError) else str(exc)
                self.message_user(request, f"{order.pk}: {said}", messages.WARNING)
                continue
            self.message_user(
                request,
                gettext("%(order)s (%(symbol)s): %(status)s, %(filled)s of %(qty)s filled")
                % {
                    "order": order.pk,
                    "symbol": order.symbol,
                    "status": after.status,
                    "filled": after.filled_qty,
                    "qty": after.qty,
                },
                messages.SUCCESS if after.status == Order.Status.CANCELLED else messages.WARNING,
            )
        return None


@admin.register(Fill)
class FillAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("filled_at", "order", "qty", "price", "fee", "tax", "broker_fill_key")
    search_fields = ("broker_fill_key",)
    list_select_related = ("order",)
    ordering = ("-filled_at", "-pk")
    actions = ["export_trades", "export_daily_pnl"]

    @admin.action(description=_("Export the selected trades as CSV"))
    def export_trades(self, request, queryset):
        return _csv_response(
            trades_csv(queryset.select_related("order__intent")), "aegis-trades.csv"
        )

    @admin.action(description=_("Export their daily P&L as CSV"))
    def export_daily_pnl(self, request, queryset):
        return _csv_response(daily_pnl_csv(queryset.select_related("order")), "aegis-daily-pnl.csv")


def _csv_response(text: str, filename: str) -> HttpResponse:
    # A byte-order mark first, so that a spreadsheet opens the Korean names as UTF-8.
    response = HttpResponse("\ufeff" + text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class TradingStateForm(forms.ModelForm):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=255,
        help_text=_("Why the state changes; kept with it."),
    )

    class Meta:
        model = TradingState
        fields = ("state", "reason")


@admin.register(BrokerCredential)
class BrokerCredentialAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Which KIS credentials are kept and until when, never their values."""

    list_display = ("kind", "app_fingerprint", "expires_at", "updated_at")
    fields = ("kind", "app_fingerprint", "expires_at", "updated_at")


class MismatchInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReconciliationMismatch
    fields = (
        "symbol",
        "position",
        "ledger_qty",
        "broker_qty",
        "broker_orderable_qty",
        "ledger_avg_price",
        "broker_avg_price",
    )
    readonly_fields = fields
    extra = 0


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every comparison of the ledger with KIS's holdings, and what did not match."""

    list_display = ("started_at", "trigger", "result", "symbols_checked", "mismatch_count")
    list_filter = ("result", "trigger")
    fields = (
        "trigger",
        "result",
        "started_at",
        "finished_at",
        "symbols_checked",
        "symbols_skipped",
        "error",
    )
    readonly_fields = fields
    inlines = [MismatchInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(mismatch_total=Count("mismatches"))

    @admin.display(description=_("mismatches"), ordering="mismatch_total")
    def mismatch_count(self, obj):
        return obj.mismatch_total


@admin.register(TradingState)
class TradingStateAdmin(admin.ModelAdmin):
    form = TradingStateForm
    list_display = ("state", "in_force", "reason", "changed_by", "changed_at", "reconciled_at")
    readonly_fields = ("changed_by", "changed_at", "reconcile_required_since", "reconciled_at")

    @admin.display(description=_("in force"))
    def in_force(self, obj):
        return (
            gettext("HALTED (awaiting the startup reconciliation)")
            if obj.awaiting_reconciliation
            else obj.state
        )

    def has_add_permission(self, request):
        return not TradingState.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        trading_state_set(
            state=form.cleaned_data["state"],
            reason=form.cleaned_data["reason"],
            changed_by=request.user.get_username(),
        )


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The alert history: breaker changes, reconciliation mismatches, flatten decisions."""

    list_display = (
        "created_at",
        "severity",
        "kind",
        "subject",
        "state",
        "short_message",
        "deliveries",
    )
    list_filter = ("severity", "kind", "subject")
    search_fields = ("message", "key")
    date_hierarchy = "created_at"

    @admin.display(description=_("message"))
    def short_message(self, obj):
        return obj.message if len(obj.message) <= 120 else obj.message[:119] + "…"


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The notifications' outbox (execution/notify/): each message to each channel, whether it
    went, and how its last attempt failed. Written and sent by Aegis alone."""

    list_display = ("created_kst", "kind", "channel", "status", "attempts", "short_text")
    list_filter = ("status", "kind", "channel")
    search_fields = ("event_key", "text")
    date_hierarchy = "created_at"
    ordering = ("-id",)

    @admin.display(description=_("created (KST)"), ordering="created_at")
    def created_kst(self, obj):
        return kst(obj.created_at)

    @admin.display(description=_("text"))
    def short_text(self, obj):
        first = obj.text.partition("\n")[0]
        return first if len(first) <= 120 else first[:119] + "…"


@admin.register(FlattenPolicy)
class FlattenPolicyAdmin(admin.ModelAdmin):
    """One row: the emergency-flatten policy (off by default; auto-flatten off by default)."""

    list_display = (
        "__str__",
        "enabled",
        "kis_down_minutes",
        "on_prices_stale",
        "prices_stale_s",
        "auto_flatten",
        "updated_at",
    )
    fields = ("enabled", "kis_down_minutes", "on_prices_stale", "prices_stale_s", "auto_flatten")

    def has_add_permission(self, request):
        return not FlattenPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False
