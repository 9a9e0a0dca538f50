from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from desk.views import desk
from picks.api import PicksIngestView

from .health import health, metrics

urlpatterns = [
    path("admin/desk/", admin.site.admin_view(desk), name="desk"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # the admin's language switch
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/picks/ingest", PicksIngestView.as_view(), name="picks-ingest"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
]
