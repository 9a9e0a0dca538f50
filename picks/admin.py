import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

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

    @admin.display(boolean=True, description="token")
    def has_token(self, obj: PickSource) -> bool:
        return bool(obj.token_sha256)

    # Whoever holds a source's token can trade through it: issuing one needs the change
    # permission, and a second, explicit confirmation (the first post only shows which sources
    # and what it does).
    @admin.action(
        description="Issue a new token (shown once; the old one stops working)",
        permissions=["change"],
    )
    def issue_token(self, request, queryset):
        if not confirmed(request):
            return confirmation(
                self,
                request,
                action="issue_token",
                title="Issue new tokens? / 새 토큰을 발급할까요?",
                explanation="A new token replaces the current one of each source below: the old "
                "token stops working at once, and the new one is shown only once, on the next "
                "page.\n아래 각 소스의 현재 토큰이 새 토큰으로 바뀝니다. 이전 토큰은 즉시 "
                "사용할 수 없게 되며, 새 토큰은 다음 화면에서 한 번만 표시됩니다.",
                items=[(s.pk, f"{s.code} {s.name}".strip()) for s in queryset],
                confirm="Yes, issue new tokens / 예, 발급합니다",
            )
        for source in queryset:
            token = source_token_issue(source=source)
            # Shown once, here; only its SHA-256 is kept.
            self.message_user(
                request,
                f"New token for source {source.code}, shown only this once: {token}",
                messages.WARNING,
            )


@admin.register(GateSettings)
class GateSettingsAdmin(admin.ModelAdmin):
    """One row (pk 1): no second one, never deleted. Its form runs the model's validators."""

    fieldsets = (
        ("Gate 1: validity", {"fields": ("max_pick_age_s", "entry_cutoff")}),
        (
            "Gate 2: risk",
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
            "Gate 3: price",
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
        ("Orphan sweep", {"fields": ("sweep_after_s",)}),
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
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(
                        request,
                        f"Pick {pick_id} goes through the gates / 매수 픽 {pick_id} 검증 중",
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
                "title": "Manual buy / 수동 매수",
            },
        )


class ManualBuyForm(forms.Form):
    source = forms.ModelChoiceField(
        queryset=PickSource.objects.filter(active=True, exit_profile__isnull=False),
        help_text="The pick source it counts under; its exit profile watches the position.",
    )
    symbol = forms.CharField(min_length=6, max_length=6, help_text="KRX short code, e.g. 005930.")
    qty = forms.IntegerField(min_value=1, required=False, help_text="Shares; or a budget.")
    budget_krw = forms.IntegerField(min_value=1, required=False, help_text="KRW; or shares.")
    limit_price = forms.IntegerField(
        min_value=1, required=False, help_text="KRW; without it, priced from the last trade."
    )
