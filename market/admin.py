"""The market's rows in the admin: best prices (read only), stock names and the calendar's
special days."""

from django.contrib import admin

from .models import BestPrice, SpecialDay, Symbol


@admin.register(BestPrice)
class BestPriceAdmin(admin.ModelAdmin):
    list_display = ("symbol", "price", "prev_close", "source", "event_at", "updated_at")
    search_fields = ("symbol",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SpecialDay)
class SpecialDayAdmin(admin.ModelAdmin):
    """The market calendar's special days: extra closures, late opens and closes KRX announces.
    They override the holiday library for their date; every process reads them within a
    minute."""

    list_display = ("day", "closed", "open_at", "close_at", "note", "updated_at")
    list_filter = ("closed",)
    date_hierarchy = "day"
    search_fields = ("note",)


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    """Stock names, loaded from KIS's master files (`manage.py symbols_load`)."""

    list_display = ("code", "name", "market", "updated_at")
    list_filter = ("market",)
    search_fields = ("code", "name")
    ordering = ("code",)
