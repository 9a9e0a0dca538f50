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
