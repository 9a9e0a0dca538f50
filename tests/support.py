"""Helpers for tests that start other processes against the test database."""

import os
from urllib.parse import urlsplit, urlunsplit

from django.db import connection


def child_database_url() -> str:
    """DATABASE_URL pointing at the test database pytest-django created (for child processes)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
