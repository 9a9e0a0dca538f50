import itertools
import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.signals import setting_changed

from tests.support import kis as kis_worker
from tests.support import wait_until
from tests.support.kis_sim import KisSim, _process


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine or not settings.REDIS_URL:
        pytest.exit(
            "The test suite runs on real PostgreSQL and Redis: run it with `make test`, or set "
            "DATABASE_URL (postgres://…) and REDIS_URL yourself.",
            returncode=2,
        )
    # The suite sends orders at whatever hour it runs: a claim does not ask the KRX day's phase
    # (EXECUTION_MARKET_HOURS), here or in the processes a test starts, except where a test
    # turns it on (tests/execution/test_market_hours.py) or runs the production process set
    # (drill/cluster.py).
    settings.EXECUTION_MARKET_HOURS = False
    os.environ["AEGIS_MARKET_HOURS"] = "0"
    # Pages, alerts and notifications in English, here and in the processes a test starts,
    # except where a test asks for Korean, the default (tests/aegis/test_korean.py).
    settings.LANGUAGE_CODE = "en"
    os.environ["AEGIS_LANGUAGE"] = "en"
    # Django keeps the default language's catalogue from its first use, during its setup, in
    # Korean: as override_settings does, tell it the setting changed (django.test.signals), so
    # that code running outside a request (exit reasons, refusals, alerts) speaks English too.
    setting_changed.send(sender=type(settings), setting="LANGUAGE_CODE", value="en", enter=True)


_symbols = itertools.count(1)


@pytest.fixture
def new_symbol():
    """A fresh KRX-shaped code per call, so tests never share a position."""
    return lambda: f"{next(_symbols) % 1_000_000:06d}"


@pytest.fixture(autouse=True)
def no_language_from_earlier_tests():
    """A request leaves its language active in the thread (LocaleMiddleware does not undo it):
    a Korean page in one test must not make the next one's texts Korean."""
    yield
    from django.utils import translation

    translation.deactivate()


@pytest.fixture(autouse=True)
def no_hot_data_from_earlier_tests():
    """The hot data (trading/hot.py, market/prices.py) is forgotten after a commit; a test that
    rolls back never commits, so its copies must not reach the next test. Broker tokens stay."""
    from django.core.cache import cache

    client = cache._cache.get_client(write=True)
    for pattern in ("trading:*", "picks:*"):
        for key in client.scan_iter(match=cache.make_key(pattern)):
            client.delete(key)
    for pattern in ("pybreaker:aegis:*", "aegis:kis:*:reported:*"):  # KIS breakers: closed
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    from core import hotcache

    hotcache._down_until = 0.0  # an outage a test made leaves no pause behind it
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
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )


# The KIS simulator (tests/support/kis_sim.py): a real server process on loopback, one per test
# module that uses it.
@pytest.fixture(scope="module")
def kis_sim_process():
    yield from _process("real")


@pytest.fixture(scope="module")
def kis_sim_paper_process():
    yield from _process("paper")


@pytest.fixture
def kis_sim(kis_sim_process) -> KisSim:
    """The simulator (flavour real), reset and given its defaults for this test."""
    kis_sim_process.reset()
    return kis_sim_process


@pytest.fixture
def kis_sim_paper(kis_sim_paper_process) -> KisSim:
    """The simulator (flavour paper: V-prefixed TR IDs, 2 requests/s, small pages), reset."""
    kis_sim_paper_process.reset()
    return kis_sim_paper_process


@pytest.fixture
def trading_hours(kis_sim):
    """This process and the simulator at 10:00 Seoul of the next trading day, at real speed:
    for tests whose outcome hangs on the market trading (exits are decided only then) or on
    the Seoul date staying the same (today's orders)."""
    from core import clock
    from tests.support import in_session

    moment = in_session()
    kis_sim.control("/_sim/clock", {"start": moment.start.isoformat(), "origin": moment.origin})
    with clock.installed(moment):
        yield moment


@pytest.fixture
def kis_client(kis_sim):
    """A KIS client of this process on the simulator, for the services called directly."""
    from tests.support.kis import sim_dict

    return kis_worker.client_for(sim_dict(kis_sim), rate=50)


# Redis stopped and started again, for the tests of an outage.
SERVICES = Path(os.environ.get("AEGIS_SERVICES_DIR", "/nonexistent"))


def redis_up() -> bool:
    try:
        return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5).ping()
    except redis.RedisError:
        return False


@pytest.fixture
def redis_control():
    if not (SERVICES / "redis.conf").exists():
        pytest.fail("needs the throw-away Redis of scripts/with-services.sh (run `make test`)")

    def stop():
        os.kill(int((SERVICES / "redis.pid").read_text()), signal.SIGTERM)
        wait_until(lambda: not redis_up(), "Redis to stop")

    def start():
        subprocess.run(["redis-server", str(SERVICES / "redis.conf")], check=True)
        wait_until(redis_up, "Redis to start")

    yield stop, start
    if not redis_up():
        start()


@pytest.fixture
def admins_broker(kis_sim, settings):
    """The admin's KIS client (execution.broker.get_broker, made once per process) on this
    test's simulator: made again from these settings, and forgotten after."""
    from execution.broker import get_broker

    settings.KIS = settings.KIS | {
        "ENV": "simulator",
        "FLAVOUR": kis_sim.flavour,
        "BASE_URL": kis_sim.base_url,
        "WS_URL": kis_sim.ws_url,
        "ACCOUNT": f"{kis_sim.cano}-{kis_sim.acnt_prdt_cd}",
        "HTS_ID": kis_sim.hts_id,
        "QUERY_APP_KEY": kis_sim.appkey,
        "QUERY_APP_SECRET": kis_sim.appsecret,
    }
    get_broker.cache_clear()
    yield
    get_broker.cache_clear()
