"""Each symbol's best price, kept hot in Redis (through Django's cache framework) beside its row
in prices_best (market/models.py), which stays the truth: every entry has a TTL, is written or
deleted only after the commit that changed the row, and only screens (I3).

  key                    holds                                TTL    kept fresh by
  trading:px:<symbol>    the best price, its limits and       5 s    best_price_write writes it
                         trade time                                  with each upsert; any other
                                                                     change deletes it after
                                                                     commit (market/signals.py)

The key keeps the name it had when trading held this cache. The exit engine (trading/hot.py,
trading/services.py), pricesync and the router's market reads (market/reads.py) read prices
here. Every cache call survives a Redis outage (core/hotcache.py): a failed read is a miss and
the database answers.
"""

import datetime as dt
import operator
from itertools import compress
from typing import NamedTuple

import psycopg
from django.db import connection

from core.hotcache import after_commit, cache_delete_many, cache_get_many, cache_set
from core.rows import bound_cursor

from .bars import BAR_CTE, bar_closing, bar_trade
from .models import BestPrice

PRICE_TTL_S = 5


def price_key(symbol: str) -> str:
    return f"trading:px:{symbol}"


class Px(NamedTuple):
    """A best price as the screen needs it. `at` is the trade time in epoch seconds."""

    price: int
    prev_close: int | None
    upper_limit: int | None
    lower_limit: int | None
    at: float


def price_keep(symbol: str, px: Px) -> None:
    """Write through a price whose row has just been committed."""
    cache_set(price_key(symbol), px, PRICE_TTL_S)


def prices_changed(symbols) -> None:
    keys = [price_key(s) for s in set(symbols)]
    after_commit(lambda: cache_delete_many(keys))


# Trade times as epoch seconds through date_part, which computes a float8: EXTRACT has returned
# numeric since PostgreSQL 14, and its conversion made the full pass's 10,000-row screen half as
# slow again on the server (measured, 16 against 11 ms).
_PRICE_ROWS = """
SELECT symbol, price, prev_close, upper_limit, lower_limit, date_part('epoch', event_at)
FROM prices_best {where}
"""


def price_rows(symbols: list[str] | None) -> list[tuple[str, Px]]:
    """Best prices as (symbol, Px); every symbol's when `symbols` is None. One plain
    statement: 10,000 rows through the ORM's converters cost several times more."""
    with connection.cursor() as cursor:
        if symbols is None:
            cursor.execute(_PRICE_ROWS.format(where=""))
        else:
            cursor.execute(_PRICE_ROWS.format(where="WHERE symbol = ANY(%s)"), [symbols])
        return [(row[0], Px(*row[1:])) for row in cursor.fetchall()]


def within(at: float, window: tuple[dt.datetime, dt.datetime] | None) -> bool:
    """Whether the trade time `at` (epoch seconds) falls in `window`, [from, to)."""
    return window is not None and window[0].timestamp() <= at < window[1].timestamp()


_PRICE_SCREEN = """
SELECT symbol, price, event_at >= %s AND event_at < %s FROM prices_best WHERE event_at >= %s
"""


def price_screen(
    opening: tuple[dt.datetime, dt.datetime] | None, since: dt.datetime | None = None
) -> tuple[dict[str, int], set[str]]:
    """Every best price taken at `since` or later, for the full pass's screen in one statement:
    each symbol's price, and the symbols whose price is a trade of the `opening` minute ([from,
    to); None, none): only what the screen reads. On 10,000 symbols the full rows cost about
    twice as much to send and parse (measured, 22 against 12 ms), and only the few positions
    outside their bands need them (`prices`); the opening minute is compared on the server, so
    no trade time crosses.

    The rows come in PostgreSQL's binary format, which psycopg reads a third faster than text
    (measured, 12 against 18–20 ms on 10,000 rows). Django's cursors bind parameters on the
    client, which allows text results only, so this one statement runs on a psycopg cursor
    that binds on the server, wrapped as Django wraps its own, so that query logging, execute
    wrappers and error translation see it as any other."""
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    # django-stubs types the cursor it wraps as a wrapper already; Django wraps the driver's.
    with wrap(raw) as cursor:  # type: ignore[arg-type]
        cursor.execute(
            _PRICE_SCREEN,
            (list(opening) if opening is not None else [None, None])
            + [since or dt.datetime.min.replace(tzinfo=dt.UTC)],
        )
        rows = cursor.fetchall()
    # Built in C (itemgetters and compress over the rows) rather than comprehensions.
    return (
        dict(zip(map(_first, rows), map(_second, rows))),
        set(compress(map(_first, rows), map(_third, rows))),
    )


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_third = operator.itemgetter(2)


# Beyond this many symbols one query costs less than their cache keys (a full pass's screen
# that finds the whole book outside its bands, as in the opening minute).
PRICES_FROM_CACHE_MAX = 500


def prices(symbols: list[str] | None, *, use_cache: bool = True) -> dict[str, Px]:
    """Best prices of `symbols` (the tick path): the cache first, one query for the rest, which
    are written back. Every symbol's (None, the full pass): one query, which on 10,000 symbols
    costs a fraction of what as many cache keys cost through Django's cache framework."""
    if symbols is None:
        return dict(price_rows(None))
    found: dict[str, Px] = {}
    use_cache = use_cache and len(symbols) <= PRICES_FROM_CACHE_MAX
    if use_cache and symbols:
        hits = cache_get_many([price_key(s) for s in symbols])
        found = {key[len("trading:px:") :]: px for key, px in hits.items()}
    missing = [s for s in symbols if s not in found]
    if missing:
        fetched = dict(price_rows(missing))
        found.update(fetched)
        if use_cache:
            for symbol, px in fetched.items():
                cache_set(price_key(symbol), px, PRICE_TTL_S)
    return found


# --- the upsert ---------------------------------------------------------------------------------

_UPSERT = """
INSERT INTO {table} (symbol, price, prev_close, upper_limit, lower_limit, source, event_at,
                     updated_at)
VALUES (%(symbol)s, %(price)s, %(prev_close)s, %(upper)s, %(lower)s, %(source)s, %(at)s, now())
ON CONFLICT (symbol) DO UPDATE SET
    price = EXCLUDED.price, source = EXCLUDED.source, event_at = EXCLUDED.event_at,
    prev_close = COALESCE(EXCLUDED.prev_close, {table}.prev_close),
    upper_limit = COALESCE(EXCLUDED.upper_limit, {table}.upper_limit),
    lower_limit = COALESCE(EXCLUDED.lower_limit, {table}.lower_limit),
    updated_at = now()
WHERE {table}.event_at <= EXCLUDED.event_at
RETURNING price, prev_close, upper_limit, lower_limit, date_part('epoch', event_at)
"""


def best_price_write(
    *,
    symbol: str,
    price: int,
    at: dt.datetime,
    source: str,
    prev_close: int | None = None,
    upper_limit: int | None = None,
    lower_limit: int | None = None,
) -> Px | None:
    """Upsert the symbol's best price unless a newer one is stored (a late REST answer never
    overwrites a fresher trade), and write it through to the cache once committed. Returns the
    stored row, limits included, or None when a newer price was kept. A stored trade counts
    into its minute's bar (market/bars.py)."""
    params = {
        "symbol": symbol,
        "price": price,
        "prev_close": prev_close,
        "upper": upper_limit,
        "lower": lower_limit,
        "source": source,
        "at": at,
    }
    sql = _UPSERT.format(table=BestPrice._meta.db_table)
    closing = bar_closing(symbol, at)
    if closing is not None:  # the minute's first trade writes the last minute's bar with it
        sql = BAR_CTE + sql
        params |= closing
    with bound_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    bar_trade(symbol, price, at)
    px = Px(*row)
    after_commit(lambda: price_keep(symbol, px))
    return px
