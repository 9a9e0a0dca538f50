"""Django's Redis cache backend, keeping its redis.Redis client objects, with values in JSON.

Django's RedisCacheClient builds a new redis.Redis for every cache operation. Building one fills
its table of response callbacks, which costs about 170 µs on this kind of machine: more than
the Redis round trip of a warm call, on every hot-data read and write of the exit engine and the
picks router. A redis.Redis is safe to share between threads (each command takes a connection
from the pool), and Django gives each thread its own cache object besides, so one per
connection pool is kept for the life of the cache client.

Values are JSON (JsonSerializer), never pickle: Django's default serializer unpickles whatever
it reads, so whoever could write to Redis could run code in every process that reads the cache,
the one holding the order key included. JSON carries only data; the few types Aegis caches
beyond JSON's own (tuples, Decimals, dates, arrays, the hot data's named tuples, dataclasses
and model rows) are listed in settings.CACHE_JSON_TYPES and rebuilt only from data; bytes and
arrays travel as raw bytes after the JSON (_ENVELOPE), read back as bytes and numbers only. A
value of any other type is refused when it is written (CacheValueUnsupported); a value read
back that is not such JSON (tampered with, or pickled by an older version) is a cache miss, logged.
"""

import array
import dataclasses
import datetime as dt
import json
import logging
import struct
import threading
from decimal import Decimal

from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db import models
from django.utils.module_loading import import_string

logger = logging.getLogger("aegis.cache")


class CacheValueUnsupported(TypeError):
    """A value of a type the cache does not carry: register its class in
    settings.CACHE_JSON_TYPES (a named tuple, a dataclass, a model, or a class whose
    __reduce__ is (the class, its arguments)), or cache plain data."""


class CacheValueRejected(ValueError):
    """A cached value that is not JSON this serializer wrote (tampered, or from an older
    version): read as a miss."""


# A tagged value is a JSON object with one key starting with "~".
_TAG = "~"

_registry: dict[str, type] | None = None
_registry_lock = threading.Lock()


def _types() -> dict[str, type]:
    """settings.CACHE_JSON_TYPES, imported once, by dotted path."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = {
                    path: import_string(path) for path in getattr(settings, "CACHE_JSON_TYPES", ())
                }
    return _registry


def _name_of(cls: type) -> str | None:
    path = f"{cls.__module__}.{cls.__qualname__}"
    return path if _types().get(path) is cls else None


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _scalars(values) -> bool:
    """Whether every item is a JSON scalar (the common case of long sequences: a book's
    symbols), so the sequence goes to JSON as it is, without a call per item."""
    return _SCALARS.issuperset(map(type, values))


def _encode(value, blobs: list):
    """`value` as plain JSON data (tagged where JSON has no such type)."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return list(value) if _scalars(value) else [_encode(v, blobs) for v in value]
    if kind is dict:
        if all(type(k) is str and not k.startswith(_TAG) for k in value):
            return {k: _encode(v, blobs) for k, v in value.items()}
        return {"~d": [[_encode(k, blobs), _encode(v, blobs)] for k, v in value.items()]}
    if kind is tuple:
        return {"~t": list(value) if _scalars(value) else [_encode(v, blobs) for v in value]}
    if kind is Decimal:
        return {"~dec": str(value)}
    if kind is dt.datetime:
        return {"~dt": value.isoformat()}
    if kind is dt.date:
        return {"~date": value.isoformat()}
    if kind is dt.time:
        return {"~time": value.isoformat()}
    if kind is bytes:
        blobs.append(value)
        return {"~b": len(blobs) - 1}
    if kind is array.array:  # raw machine values: every Aegis process runs on one architecture
        blobs.append(value.tobytes())
        return {"~arr": [value.typecode, len(blobs) - 1]}
    name = _name_of(kind)
    if name is None:
        raise CacheValueUnsupported(
            f"the cache does not carry {kind.__module__}.{kind.__qualname__}: add it to "
            f"settings.CACHE_JSON_TYPES or cache plain data"
        )
    return {"~o": name, "v": _encode(_state(value), blobs)}


def _state(value):
    kind = type(value)
    if isinstance(value, tuple) and hasattr(kind, "_fields"):  # a named tuple
        return list(value)
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, models.Model):
        return {f.attname: getattr(value, f.attname) for f in kind._meta.concrete_fields}
    reduced = value.__reduce__()
    if not (isinstance(reduced, tuple) and len(reduced) == 2 and reduced[0] is kind):
        raise CacheValueUnsupported(
            f"{kind.__qualname__}.__reduce__ must return (the class, its arguments) for the "
            f"cache to carry it"
        )
    return list(reduced[1])


def _rebuild(cls: type, state):
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return cls(*state)
    if dataclasses.is_dataclass(cls):
        return cls(**state)
    if issubclass(cls, models.Model):
        return cls.from_db("default", list(state), list(state.values()))
    return cls(*state)


def _decode(data, blobs: list):
    kind = type(data)
    if kind is list:
        return data if _scalars(data) else [_decode(v, blobs) for v in data]
    if kind is not dict:
        return data
    if len(data) in (1, 2) and any(k.startswith(_TAG) for k in data):
        if len(data) == 1:
            ((tag, inner),) = data.items()
        else:
            tag, inner = "~o", data.get("~o")
        if tag == "~d":
            return {_decode(k, blobs): _decode(v, blobs) for k, v in inner}
        if tag == "~t":
            return tuple(inner) if _scalars(inner) else tuple(_decode(v, blobs) for v in inner)
        if tag == "~dec":
            return Decimal(inner)
        if tag == "~dt":
            return dt.datetime.fromisoformat(inner)
        if tag == "~date":
            return dt.date.fromisoformat(inner)
        if tag == "~time":
            return dt.time.fromisoformat(inner)
        if tag == "~b":
            return bytes(blobs[inner])
        if tag == "~arr":
            typecode, index = inner
            values = array.array(typecode)
            values.frombytes(blobs[index])
            return values
        if tag == "~o":
            cls = _types().get(inner) if isinstance(inner, str) else None
            if cls is None or set(data) != {"~o", "v"}:
                raise CacheValueRejected(f"not a registered cached type: {inner!r}")
            return _rebuild(cls, _decode(data["v"], blobs))
        raise CacheValueRejected(f"unknown tag {tag!r}")
    return {k: _decode(v, blobs) for k, v in data.items()}


# Values with bytes or arrays: this marker, the JSON's length (4 bytes, big-endian), the JSON,
# then each blob as its length (4 bytes) and its bytes, in the order the JSON numbers them.
# Raw bytes after the JSON spare base64 its cost (a 10,000-position book: 0.8 MB of arrays).
_ENVELOPE = b"\x00aegis-json\x00"
_LENGTH = struct.Struct(">I")


def _pack(header: bytes, blobs: list) -> bytes:
    parts = [_ENVELOPE, _LENGTH.pack(len(header)), header]
    for blob in blobs:
        parts += [_LENGTH.pack(len(blob)), blob]
    return b"".join(parts)


def _unpack(data: bytes) -> tuple[memoryview, list]:
    view, at = memoryview(data), len(_ENVELOPE)
    parts = []
    while at < len(view):
        (size,), at = _LENGTH.unpack_from(view, at), at + _LENGTH.size
        if at + size > len(view):
            raise ValueError("truncated")
        parts.append(view[at : at + size])
        at += size
    if not parts:
        raise ValueError("no JSON")
    return parts[0], parts[1:]


class JsonSerializer:
    """Django's RedisSerializer's interface: integers stay Redis integers (incr, decr), every
    other value is JSON (see the module's docstring)."""

    def dumps(self, obj):
        if type(obj) is int:
            return obj
        blobs: list = []
        header = json.dumps(_encode(obj, blobs), separators=(",", ":")).encode()
        return _pack(header, blobs) if blobs else header

    def loads(self, data):
        try:
            return int(data)
        except ValueError:
            pass
        try:
            if data.startswith(_ENVELOPE):
                header, blobs = _unpack(data)
                return _decode(json.loads(bytes(header)), blobs)
            return _decode(json.loads(data), [])
        except CacheValueRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the bytes were, they are no value
            raise CacheValueRejected(f"{type(exc).__name__}: not a cached JSON value") from None


class KeptClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("serializer", JsonSerializer)
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}  # id(pool) -> its redis.Redis

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def _loads(self, key, value, default):
        if value is None:
            return default
        try:
            return self._serializer.loads(value)
        except CacheValueRejected as exc:
            logger.warning("cache.value_rejected key=%s: %s; read as a miss", key, exc)
            return default

    def get(self, key, default):
        return self._loads(key, self.get_client(key).get(key), default)

    def get_many(self, keys):
        client = self.get_client(None)
        found = {}
        for key, value in zip(keys, client.mget(keys)):
            if value is not None and (loaded := self._loads(key, value, _MISS)) is not _MISS:
                found[key] = loaded
        return found


_MISS = object()


class KeptClientRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = KeptClientRedisCacheClient
