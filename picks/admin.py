from django.contrib import admin

from .models import Pick


@admin.register(Pick)
class PickAdmin(admin.ModelAdmin):
    list_display = ("received_at", "source", "external_id", "side", "symbol", "qty", "budget_krw",
                    "status", "rejected_gate", "reject_reason")
    list_filter = ("status", "rejected_gate", "source")
    search_fields = ("external_id", "symbol")
    date_hierarchy = "received_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
