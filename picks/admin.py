import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import capfirst
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from core import clock
from execution.admin_confirm import confirmation, confirmed
from execution.models import Side

from .models import GateSettings, Pick, PickSource
from .serializers import PickInSerializer
from .services import PicksBacklogFull, picks_ingest, source_token_issue


@admin.register(PickSource)
class PickSourceAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "active",
        "rate_limit",
        "require_hmac",
        "exit_profile",
        "has_token",
        "created_at",
    )
    list_filter = ("active", "require_hmac")
    list_select_related = ("exit_profile",)
    search_fields = ("code", "name")
    fields = (
        "code",
        "name",
        "active",
        "rate_limit",
        "require_hmac",
        "exit_profile",
        "entry_venue",
        "has_token",
    )
    readonly_fields = ("has_token",)
    actions = ["issue_token"]

    def get_readonly_fields(self, request, obj=None):
        # Picks refer to the code (their `source` column): it never changes once saved.
        return ("code", "has_token") if obj is not None else ("has_token",)

    @admin.display(boolean=True, description=_("token"))
    def has_token(self, obj: PickSource) -> bool:
        return bool(obj.token_sha256)

    # Whoever holds a source's token can trade through it: issuing one needs the change
    # permission, and a second, explicit confirmation (the first post only shows which sources
    # and what it does).
    @admin.action(
        description=_("Issue a new token (shown once; the old one stops working)"),
        permissions=["change"],
    )
    def issue_token(self, request, queryset):
        if not confirmed(request):
            return confirmation(
                self,
                request,
                action="issue_token",
                title=gettext("Issue new tokens?"),
                explanation=gettext(
                    "A new token replaces the current one of each source below: the old token "
                    "stops working at once, and the new one is shown only once, on the next page."
                ),
                items=[(s.pk, f"{s.code} {s.name}".strip()) for s in queryset],
                confirm=gettext("Yes, issue new tokens"),
            )
        for source in queryset:
            token = source_token_issue(source=source)
            # Shown once, here; only its SHA-256 is kept.
            self.message_user(
                request,
                gettext("New token for source %(source)s, shown only this once: %(token)s")
                % {"source": source.code, "token": token},
                messages.WARNING,
            )


@admin.register(GateSettings)
class GateSettingsAdmin(admin.ModelAdmin):
    """One row (pk 1): no second one, never deleted. Its form runs the model's validators."""

    fieldsets = (
        (_("Gate 1: validity"), {"fields": ("max_pick_age_s", "entry_cutoff")}),
        (
            _("Gate 2: risk"),
            {
                "fields": (
                    "max_open_positions",
                    "max_symbol_exposure_krw",
                    "max_total_exposure_krw",
                    "daily_loss_limit_krw",
                    "min_cash_krw",
                )
            },
        ),
        (
            _("Gate 3: price"),
            {
                "fields": (
                    "max_price_age_s",
                    "max_spread_pct",
                    "limit_up_guard_pct",
                    "max_deviation_pct",
                    "entry_slippage_pct",
                )
            },
        ),
        (_("Orphan sweep"), {"fields": ("sweep_after_s",)}),
    )
    list_display = (
        "__str__",
        "max_pick_age_s",
        "entry_cutoff",
        "max_open_positions",
        "daily_loss_limit_krw",
        "updated_at",
    )

    def has_add_permission(self, request):
        return not GateSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Pick)
class PickAdmin(admin.ModelAdmin):
    """Read only: picks are written by the ingest API and the router alone."""

    list_display = (
        "received_at",
        "source",
        "external_id",
        "side",
        "symbol",
        "qty",
        "budget_krw",
        "status",
        "rejected_gate",
        "reject_reason",
        "routed_by",
        "intent",
    )
    list_filter = ("status", "rejected_gate", "routed_by", "source")
    list_select_related = ("source", "intent")
    search_fields = ("external_id", "symbol")
    date_hierarchy = "received_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        own = [
            path(
                "manual-buy/",
                self.admin_site.admin_view(self.manual_buy),
                name="picks_pick_manual_buy",
            )
        ]
        return own + super().get_urls()

    def manual_buy(self, request):
        """A person's buy, stored as a pick of the source chosen and routed through the same
        gates as any (picks.services.picks_ingest): the pick's page then shows its outcome."""
        if not request.user.has_perm("execution.add_orderintent"):
            raise PermissionDenied
        form = ManualBuyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            source = form.cleaned_data.pop("source")
            item = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")} | {
                "source": source.code,
                "external_id": f"desk:{request.user.get_username()}:{uuid.uuid4()}",
                "side": Side.BUY,
                "generated_at": clock.now().isoformat(),
            }
            wire = PickInSerializer(data=item)
            if wire.is_valid():
                try:
                    [pick_id], _ = picks_ingest(source=source, items=[wire.validated_data])
                except PicksBacklogFull as exc:
                    self.message_user(
                        request,
                        gettext(
                            "%(waiting)s picks already wait for a router (at most %(limit)s); "
                            "nothing of this batch was stored: send it again in a moment"
                        )
                        % {"waiting": exc.waiting, "limit": exc.limit},
                        messages.ERROR,
                    )
                else:
                    self.message_user(
                        request,
                        gettext("Pick %(pick)s goes through the gates") % {"pick": pick_id},
                        messages.SUCCESS,
                    )
                    return redirect("admin:picks_pick_change", pick_id)
            else:
                for field, errors in wire.errors.items():
                    form.add_error(field if field in form.fields else None, errors)
        return TemplateResponse(
            request,
            "admin/picks/pick/manual_buy.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "title": gettext("Manual buy"),
            },
        )


class ManualBuyForm(forms.Form):
    # The labels are the pick's own field names (Django's "Source", "Budget krw").
    source = forms.ModelChoiceField(
        queryset=PickSource.objects.filter(active=True, exit_profile__isnull=False),
        label=capfirst(pgettext_lazy("pick", "source")),
        help_text=_("The pick source it counts under; its exit profile watches the position."),
    )
    symbol = forms.CharField(
        min_length=6,
        max_length=6,
        label=capfirst(_("symbol")),
        help_text=_("KRX short code, e.g. 005930."),
    )
    qty = forms.IntegerField(
        min_value=1, required=False, label=capfirst(_("qty")), help_text=_("Shares; or a budget.")
    )
    budget_krw = forms.IntegerField(
        min_value=1,
        required=False,
        label=capfirst(_("budget krw")),
        help_text=_("KRW; or shares."),
    )
    limit_price = forms.IntegerField(
        min_value=1,
        required=False,
        label=capfirst(_("limit price")),
        help_text=_("KRW; without it, priced from the last trade."),
    )
