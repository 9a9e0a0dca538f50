"""Pages show times in Seoul, the market's zone, while the process runs in UTC as servers do
(settings.TIME_ZONE): every request activates settings.DISPLAY_TIME_ZONE."""

from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


class DisplayTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.zone = ZoneInfo(settings.DISPLAY_TIME_ZONE)

    def __call__(self, request):
        timezone.activate(self.zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
