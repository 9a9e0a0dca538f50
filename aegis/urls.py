from django.contrib import admin
from django.urls import path

from .health import health

admin.site.site_header = "Aegis"
admin.site.site_title = "Aegis"
admin.site.index_title = "Positions, exits and orders"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
]
