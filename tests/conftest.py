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


@pytest.fixture(autouse=True)
def no_hot_data_from_earlier_tests():
    """The exit engine's cached copies (trading/hot.py) are forgotten after a commit; a test that
    rolls back never commits, so its copies must not reach the next test. Broker tokens stay."""
    from django.core.cache import cache

    client = cache._cache.get_client(write=True)
    for pattern in ("trading:*", "picks:*"):
        for key in client.scan_iter(match=cache.make_key(pattern)):
            client.delete(key)
    for pattern in ("pybreaker:aegis:*", "aegis:kis:*:reported:*"):  # KIS breakers: closed
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    from trading import hot

    hot._down_until = 0.0  # an outage a test made leaves no pause behind it
    from trading.services import market_hold

    market_hold.forget()  # a refusal a test made is read again
    yield



@pytest.fixture(scope="session", autouse=True)
def test_database_left_free(django_db_setup, django_db_blocker):
    """At the end of the session, end every other session on the test database before it is
    dropped: PgBouncer keeps its server connections to it open in its pool (and a child
    process may linger), and PostgreSQL refuses to drop a database in use. Over the direct
    connection, never through the pooler."""
    yield
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from django.db import connection

    from tests.support import child_database_url

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
        direct = urlsplit(child_database_url("DATABASE_DIRECT_URL"))
        connection.close()
    with psycopg.connect(urlunsplit(direct._replace(path="/postgres")), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
