from decimal import Decimal

from django import forms
from django.contrib import admin, messages

from execution.admin_confirm import confirmation, confirmed

from .models import CadenceWindow, ExitProfile, PositionExitState, TakeProfitTier
from .services import exit_pause


class TierFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        total = Decimal(0)
        for form in self.forms:
            if not getattr(form, "cleaned_data", None) or form.cleaned_data.get("DELETE"):
                continue
            total += form.cleaned_data.get("sell_pct") or 0
        if total > 100:
            raise forms.ValidationError(
                f"The tiers sell {total}% of the position in all; at most 100% can be sold."
            )


class TakeProfitTierInline(admin.TabularInline):
    model = TakeProfitTier
    formset = TierFormSet
    extra = 1


@admin.register(ExitProfile)
class ExitProfileAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "stop_loss_pct",
        "trailing_activation_pct",
        "trailing_pct",
        "gap_down_pct",
        "day_trade",
        "time_exit_at",
        "max_holding_days",
        "nxt_exits",
        "updated_at",
    )
    search_fields = ("name",)
    inlines = [TakeProfitTierInline]
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        ("Loss", {"fields": ("stop_loss_pct", "stop_in_opening_auction", "gap_down_pct")}),
        ("Trailing stop", {"fields": ("trailing_activation_pct", "trailing_pct")}),
        ("Time", {"fields": ("day_trade", "time_exit_at", "max_holding_days")}),
        ("Venues / 시장", {"fields": ("nxt_exits", "vi_action")}),
    )


@admin.register(PositionExitState)
class PositionExitStateAdmin(admin.ModelAdmin):
    list_display = (
        "position",
        "profile",
        "high_water_mark",
        "peak_qty",
        "tiers_done",
        "paused_at",
        "updated_at",
    )
    list_select_related = ("position", "profile")
    readonly_fields = (
        "position",
        "high_water_mark",
        "peak_qty",
        "tiers_done",
        "paused_at",
        "paused_by",
        "updated_at",
    )
    actions = ["pause", "resume"]

    @admin.action(description="Pause its exits / 청산 일시 중지", permissions=["change"])
    def pause(self, request, queryset):
        return self._pause(request, queryset, paused=True)

    @admin.action(description="Resume its exits / 청산 재개", permissions=["change"])
    def resume(self, request, queryset):
        return self._pause(request, queryset, paused=False)

    def _pause(self, request, queryset, *, paused: bool):
        states = list(queryset.select_related("position"))
        if not confirmed(request):
            return confirmation(
                self,
                request,
                action="pause" if paused else "resume",
                title="Pause exits / 청산 일시 중지" if paused else "Resume exits / 청산 재개",
                explanation="No exit is decided for these positions, GAP_DOWN included, until "
                "they are resumed; orders already sent stay. / 재개할 때까지 이 종목들의 청산을 "
                "판단하지 않습니다."
                if paused
                else "Their exits are decided again from the next price. / 다음 시세부터 청산을 "
                "다시 판단합니다.",
                items=[(s.pk, str(s.position)) for s in states],
                confirm="Yes / 예",
            )
        for state in states:
            exit_pause(position_id=state.position_id, paused=paused, by=request.user.get_username())
        self.message_user(
            request,
            f"{len(states)} position(s) {'paused' if paused else 'resumed'}.",
            messages.SUCCESS,
        )
        return None

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting it would silently turn the position's exits off: change its profile instead.
        return False


@admin.register(CadenceWindow)
class CadenceWindowAdmin(admin.ModelAdmin):
    """The exit engine's cadence around the open and the close. Beat reads these every few
    seconds: a change applies without a restart."""

    list_display = ("name", "anchor", "start_offset_s", "end_offset_s", "interval_ms", "enabled")
    list_editable = ("interval_ms", "enabled")
