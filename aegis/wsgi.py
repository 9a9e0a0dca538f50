import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")

application = get_wsgi_application()

# Set up: Django's objects out of the collector's full passes (core/memory.py).
from core.memory import freeze_startup_objects  # noqa: E402

freeze_startup_objects("web")
