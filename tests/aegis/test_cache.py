"""The cache backend on real Redis: Django's operations, one redis.Redis kept per connection pool
instead of one built per operation, and every thread with a cache of its own."""

import threading
import uuid

from django.core.cache import cache, caches

from aegis.cache import KeptClientRedisCache


def test_the_default_cache_is_redis_through_the_kept_client_backend():
    assert isinstance(caches["default"], KeptClientRedisCache)


def test_operations_reuse_one_client_and_still_do_what_django_documents():
    key = f"test-cache-{uuid.uuid4()}"
    client = cache._cache.get_client(key)
    assert cache._cache.get_client(key, write=True) is client
    cache.set(key, {"a": 1}, timeout=5)
    assert cache.get_many([key, key + "-missing"]) == {key: {"a": 1}}
    assert 0 < client.ttl(cache.make_key(key)) <= 5  # written with its TTL, through that client
    cache.delete(key)
    assert cache.get(key) is None
    assert cache._cache.get_client(key) is client


def test_each_thread_has_a_cache_and_client_of_its_own():
    here = caches["default"]._cache.get_client()
    there = []
    thread = threading.Thread(target=lambda: there.append(caches["default"]._cache.get_client()))
    thread.start()
    thread.join(10)
    assert there and there[0] is not here


# --- values are JSON, never pickle ---------------------------------------------------------------


def test_every_type_aegis_caches_round_trips():
    import array
    import datetime as dt
    from decimal import Decimal

    from core import clock
    from market.prices import Px
    from picks.models import PickSource
    from trading import hot
    from trading.rules import Rules, Tier

    rules = Rules(
        stop_loss_pct=Decimal("3"),
        tiers=(Tier(Decimal("5"), Decimal("50")),),
        time_exit_at=dt.time(15, 20),
        max_holding_days=3,
    )
    watch = hot.Watch(
        7, "005930", 1, float("-inf"), 71_500.5, 739_000, 10, 10, "70000.5", None, 10, 0
    )
    book = hot.Book.of([watch])
    source = PickSource(
        id=3,
        code="3001",
        name="뉴스",
        token_sha256="ab" * 32,
        rate_limit="5/second",
        created_at=clock.now(),
    )
    values = {
        "px": Px(71_000, 70_000, None, 49_000, 1.5),
        "profiles": ((3, 4), hot.Profiles(2, {1: rules, 2: Rules()}, "stamp")),
        "book": ((9,), (2, book)),
        "gap": {1: Decimal("69000.5"), 2: Decimal("1")},
        "token": {"value": "tok", "expires_at": 1.7e9},
        "book_top": (71_000, None),
        "plain": {"~x": [1, "two", None, True], "nested": {"a": (1, 2)}},
        "bytes": b"\x00\x80raw",
        "arr": array.array("d", [1.0, float("inf")]),
        "when": (dt.date(2026, 12, 7), clock.now()),
        "source": source,
    }
    for name, value in values.items():
        key = f"test-json-{name}-{uuid.uuid4()}"
        cache.set(key, value, timeout=5)
        back = cache.get(key)
        if name == "book":
            assert back[0] == value[0] and back[1][0] == 2
            assert list(back[1][1]) == [watch] and back[1][1].symbols == ("005930",)
            assert back[1][1].lows.tolist() == [float("-inf")]
        elif name == "source":
            assert (back.pk, back.code, back.name, back.rate_limit, back.created_at) == (
                3,
                "3001",
                "뉴스",
                "5/second",
                source.created_at,
            )
            assert not back._state.adding
        else:
            assert back == value and type(back) is type(value), name
    assert cache.get_many([]) == {}


def test_an_unregistered_type_is_refused_at_write_time():
    import pytest

    from aegis.cache import CacheValueUnsupported

    class Unknown:
        pass

    key = f"test-json-unknown-{uuid.uuid4()}"
    with pytest.raises(CacheValueUnsupported, match="CACHE_JSON_TYPES"):
        cache.set(key, {"a": Unknown()}, timeout=5)
    with pytest.raises(CacheValueUnsupported):
        cache.set(key, {1, 2}, timeout=5)
    assert cache.get(key) is None


class _Bomb:
    """Unpickling it would call os.system: must never run."""

    def __reduce__(self):
        import os

        return (os.system, ("touch " + _Bomb.marker,))


def test_a_pickled_payload_written_to_redis_is_a_miss_and_never_unpickled(tmp_path):
    import pickle

    _Bomb.marker = str(tmp_path / "pwned")
    key = f"test-json-pickled-{uuid.uuid4()}"
    other = f"test-json-fine-{uuid.uuid4()}"
    cache.set(other, "fine", timeout=5)
    raw = cache._cache.get_client(key, write=True)
    raw.set(cache.make_key(key), pickle.dumps(_Bomb()), ex=5)
    assert cache.get(key) is None
    assert cache.get(key, "default") == "default"
    assert cache.get_many([key, other]) == {other: "fine"}
    assert not (tmp_path / "pwned").exists()
    # A registered name with a forged body, an unregistered class path, garbage: misses too.
    for forged in (
        b'{"~o":"os.system","v":["touch x"]}',
        b'{"~o":"market.prices.Px","v":1}',
        b'{"~zz":1}',
        b"\xff\xfe",
        b'{"~arr":["d","***"]}',
        b'\x00aegis-json\x00\x00\x00\x00\x0b{"~b":0}\x00\x00\x00\x09ab',
        b'\x00aegis-json\x00\x00\x00\x00\x0a{"~b":0}',
    ):
        raw.set(cache.make_key(key), forged, ex=5)
        assert cache.get(key) is None, forged
