from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

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
                gettext(
                    "The tiers sell %(total)s%% of the position in all; at most 100%% can be sold."
                )
                % {"total": total}
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
        (_("Loss"), {"fields": ("stop_loss_pct", "stop_in_opening_auction", "gap_down_pct")}),
        (_("Trailing stop"), {"fields": ("trailing_activation_pct", "trailing_pct")}),
        (
            pgettext_lazy("exit profile fieldset", "Time"),
            {"fields": ("day_trade", "time_exit_at", "max_holding_days")},
        ),
        (_("Venues"), {"fields": ("nxt_exits", "vi_action")}),
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

    @admin.action(description=_("Pause its exits"), permissions=["change"])
    def pause(self, request, queryset):
        return self._pause(request, queryset, paused=True)

    @admin.action(description=_("Resume its exits"), permissions=["change"])
    def resume(self, request, queryset):
        return self._pause(request, queryset, paused=False)

    def _pause(self, request, queryset, *, paused: bool):
        states = list(queryset.select_related("position"))
        if not confirmed(request):
            return confirmation(
                self,
                request,
                action="pause" if paused else "resume",
                # The pause's title keeps its Korean in English too (tests/test_admin.py).
                title=gettext("Pause exits / 청산 일시 중지")
                if paused
                else gettext("Resume exits"),
                explanation=gettext(
                    "No exit is decided for these positions, GAP_DOWN included, until they are "
                    "resumed; orders already sent stay."
                )
                if paused
                else gettext("Their exits are decided again from the next price."),
                items=[(s.pk, str(s.position)) for s in states],
                confirm=gettext("Yes"),
            )
        for state in states:
            exit_pause(position_id=state.position_id, paused=paused, by=request.user.get_username())
        done = (
            gettext("%(count)d position(s) paused.")
            if paused
            else gettext("%(count)d position(s) resumed.")
        )
        self.message_user(request, done % {"count": len(states)}, messages.SUCCESS)
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
