from django.contrib import admin, messages

from .auth import token_issue
from .models import GateSettings, Pick, PickSource


@admin.register(PickSource)
class PickSourceAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "active", "rate_limit", "require_hmac", "exit_profile",
                    "has_token")
    list_filter = ("active", "require_hmac")
    search_fields = ("code", "name")
    actions = ["issue_token"]

    @admin.display(boolean=True, description="token")
    def has_token(self, obj: PickSource) -> bool:
        return bool(obj.token_sha256)

    @admin.action(description="Issue a new token (shown once; the old one stops working)")
    def issue_token(self, request, queryset):
        for source in queryset:
            token = token_issue(source)
            self.message_user(request, f"Token for {source.code} (shown once): {token}",
                              messages.WARNING)


@admin.register(GateSettings)
class GateSettingsAdmin(admin.ModelAdmin):
    fieldsets = (
        ("Gate 1: validity", {"fields": ("max_pick_age_s", "entry_cutoff")}),
        ("Gate 2: risk", {"fields": ("max_open_positions", "max_symbol_exposure_krw",
                                     "max_total_exposure_krw", "daily_loss_limit_krw",
                                     "min_cash_krw")}),
        ("Gate 3: price", {"fields": ("max_price_age_s", "max_spread_pct", "limit_up_guard_pct",
                                      "max_deviation_pct", "entry_slippage_pct")}),
        ("Orphan sweep", {"fields": ("sweep_after_s",)}),
    )

    def has_add_permission(self, request):
        return not GateSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Pick)
class PickAdmin(admin.ModelAdmin):
    list_display = ("received_at", "source", "external_id", "side", "symbol", "qty", "budget_krw",
                    "status", "rejected_gate", "reject_reason", "routed_by", "intent")
    list_filter = ("status", "rejected_gate", "routed_by", "source")
    search_fields = ("external_id", "symbol")
    date_hierarchy = "received_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
