import itertools

import pytest
from django.conf import settings


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine or not settings.REDIS_URL:
        pytest.exit(
            "The test suite runs on real PostgreSQL and Redis: run it with `make test`, or set "
            "DATABASE_URL (postgres://…) and REDIS_URL yourself.",
            returncode=2,
        )


_symbols = itertools.count(1)


@pytest.fixture
def new_symbol():
    """A fresh KRX-shaped code per call, so tests never share a position."""
    return lambda: f"{next(_symbols) % 1_000_000:06d}"
