"""Hot data in Redis, through Django's cache framework (the review's P1 #4). PostgreSQL stays the
truth: every entry has a TTL, is written or deleted only after the database commit that changed
it, and only screens; the locked rows decide (I3).

  key                    holds                                TTL    kept fresh by
  trading:book           every managed open position,         3 s    a new generation when a
                         screened                                    position or its exit state
  trading:book:<symbol>  the same for one symbol (the tick    3 s    changes (after commit)
                         path)
  trading:profiles       every exit profile's rules           1 h    a new generation when a profile
                                                                     or tier changes (after commit)
  trading:gen:*          those generations                    1 d    a fresh random value per change
  trading:gap:<day>      GAP_DOWN thresholds from the         to 5 min after the open
                         pre-queue

Best prices (trading:px:<symbol>) are the market's hot data (market/prices.py); a tick reads its
symbol's with the book and the profiles in one round trip (read_ahead), and the exit pass
(trading/services.py) reads the others through this module.

A book entry (Watch) carries its quiet band (rules.screen_band), computed when the book is read
from the database, so a steady pass compares two numbers per position and reads nothing else.

A Redis outage slows the engine, never stops it (core/hotcache.py): a failed read is a miss (the
database answers), a failed write or delete is logged, and the TTLs bound how long anything
stale can screen. Invalidations, the generations' included, are always attempted.
"""

import datetime as dt
import logging
import secrets
import time
from array import array
from decimal import Decimal
from typing import NamedTuple

from django.core.cache import cache
from django.db import connection

from core.hotcache import after_commit, cache_get, cache_get_many, cache_set, cache_unavailable
from execution.models import Position

# Best prices are the market's (market/prices.py): read_ahead reads a tick's with its book.
from market.prices import Px, price_key

from .models import ExitProfile, PositionExitState, TakeProfitTier
from .rules import Holding, Rules, Tier, screen_band

logger = logging.getLogger("aegis.trading")

BOOK_TTL_S = 3
PROFILES_TTL_S = 3600
GAP_AFTER_OPEN_S = 300

GEN_TTL_S = 86_400
BOOK = "trading:book"
PROFILES = "trading:profiles"
PROFILES_GEN = "trading:gen:profiles"
BOOK_GEN = "trading:gen:book"


def book_key(symbol: str) -> str:
    return f"{BOOK}:{symbol}"


def book_gen_key(symbol: str) -> str:
    return f"{BOOK_GEN}:{symbol}"


def gap_key(day: dt.date) -> str:
    return f"trading:gap:{day:%Y%m%d}"


class Watch(NamedTuple):
    """One managed open position as the screen sees it, with its quiet band. Every field is a
    plain int, float or str: 10,000 of them encode in milliseconds (Decimals and dates, several
    times slower, are made only for the positions evaluated exactly)."""

    position_id: int
    symbol: str
    profile_id: int
    low: float
    high: float
    opened: int  # the Asia/Seoul date it opened, as an ordinal
    qty: int
    available: int
    avg_price: str  # exact, as Decimal's text
    high_water_mark: int | None
    peak_qty: int
    tiers_done: int

    def holding(self, held_days: int) -> Holding:
        return Holding(
            qty=self.qty,
            available=self.available,
            avg_price=Decimal(self.avg_price),
            held_days=held_days,
            high_water_mark=self.high_water_mark,
            peak_qty=self.peak_qty,
            tiers_done=self.tiers_done,
        )


class Profiles(NamedTuple):
    version: int
    rules: dict[int, Rules]
    # A digest of the profile and tier rows the rules were read from (profiles(verify=True)
    # compares it with the tables); None when not kept.
    stamp: str | None = None


class Book:
    """Managed open positions, in columns for the screen: a full pass over 10,000 reads five
    arrays and a tuple of symbols from the cache (decoded in well under a millisecond), and
    builds the positions themselves (Watch) only if it evaluates one exactly. Iterating gives
    the Watches. Every column is an array or a tuple of strings, so the cache carries a book
    as JSON (aegis/cache.py: never pickle) at about the cost of a pickle."""

    __slots__ = ("ids", "symbols", "profile_ids", "lows", "highs", "opened", "_rest", "_watches")

    def __init__(
        self,
        ids,
        symbols,
        profile_ids,
        lows,
        highs,
        opened,
        rest,
        watches: list[Watch] | None = None,
    ) -> None:
        self.ids, self.symbols, self.profile_ids = ids, symbols, profile_ids
        self.lows, self.highs, self.opened = lows, highs, opened
        # The Watches' other columns: qty, available, avg_price, high_water_mark (-1: None),
        # peak_qty, tiers_done.
        self._rest, self._watches = rest, watches

    @classmethod
    def of(cls, watches: list[Watch]) -> "Book":
        return cls(
            array("q", [w.position_id for w in watches]),
            tuple(w.symbol for w in watches),
            array("q", [w.profile_id for w in watches]),
            array("d", [w.low for w in watches]),
            array("d", [w.high for w in watches]),
            array("q", [w.opened for w in watches]),
            (
                array("q", [w.qty for w in watches]),
                array("q", [w.available for w in watches]),
                tuple(w.avg_price for w in watches),
                array(
                    "q", [-1 if w.high_water_mark is None else w.high_water_mark for w in watches]
                ),
                array("q", [w.peak_qty for w in watches]),
                array("q", [w.tiers_done for w in watches]),
            ),
            watches,
        )

    def __reduce__(self):
        return (
            Book,
            (
                self.ids,
                self.symbols,
                self.profile_ids,
                self.lows,
                self.highs,
                self.opened,
                self._rest,
            ),
        )

    def watches(self) -> list[Watch]:
        if self._watches is None:
            qty, available, avg_price, hwm, peak_qty, tiers_done = self._rest
            self._watches = list(
                map(
                    Watch._make,
                    zip(
                        self.ids,
                        self.symbols,
                        self.profile_ids,
                        self.lows,
                        self.highs,
                        self.opened,
                        qty,
                        available,
                        avg_price,
                        (None if h < 0 else h for h in hwm),
                        peak_qty,
                        tiers_done,
                    ),
                )
            )
        return self._watches

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.watches())

    def __getitem__(self, i: int) -> Watch:
        return self.watches()[i]


# --- generations: a copy read before a commit is never used after it ---------------------------


def _bump(gen_keys: list[str]) -> tuple | None:
    """Move the generations on: entries stored under an older one are misses from now on. A
    generation is compared for equality only, so a new one is a fresh random value, all of
    them written in one round trip (a counter's INCR costs two per key through Django's cache:
    the existence check, then the increment). The new generations, in order (None if Redis
    did not take them)."""
    gens = {key: secrets.randbits(62) + 1 for key in gen_keys}
    try:
        cache.set_many(gens, timeout=GEN_TTL_S)
    except Exception as exc:  # noqa: BLE001
        cache_unavailable("set_many", exc)
        return None
    return tuple(gens.values())


def _cached(key: str, gen_keys: list[str], found: dict | None = None):
    """(value, generations): the value only if it was stored under the current generations.
    A reader that met the database before a writer's commit stores under the generation it
    saw first, so its stale copy is never read (one round trip for all the keys, or none when
    `found` holds what read_ahead fetched)."""
    if found is None:
        found = cache_get_many([key, *gen_keys])
    gens = tuple(found.get(g, 0) for g in gen_keys)
    entry = found.get(key)
    if entry is not None and entry[0] == gens:
        return entry[1], gens
    return None, gens


def _store(key: str, gens: tuple, value, ttl: float) -> None:
    cache_set(key, (gens, value), ttl)


# --- profiles ----------------------------------------------------------------------------------


def profile_rules(profile: ExitProfile, tiers) -> Rules:
    return Rules(
        stop_loss_pct=profile.stop_loss_pct,
        tiers=tuple(Tier(t.gain_pct, t.sell_pct) for t in sorted(tiers, key=lambda t: t.gain_pct)),
        trailing_activation_pct=profile.trailing_activation_pct,
        trailing_pct=profile.trailing_pct,
        gap_down_pct=profile.gap_down_pct,
        time_exit_at=profile.time_exit_at,
        max_holding_days=profile.max_holding_days,
        opening_auction_stop=profile.stop_in_opening_auction,
        nxt_exits=profile.nxt_exits,
        vi_wait=profile.vi_action == ExitProfile.ViAction.WAIT,
    )


def read_ahead(symbol: str) -> dict:
    """What a tick of `symbol` reads from the cache, profiles and its book with their
    generations and its best price, in one round trip; hand it to profiles() and book(), and
    read the price with cached_price()."""
    return cache_get_many(
        [PROFILES, PROFILES_GEN, book_key(symbol), book_gen_key(symbol), price_key(symbol)]
    )


def cached_price(found: dict, symbol: str) -> Px | None:
    return found.get(price_key(symbol))


def profiles(
    *, use_cache: bool = True, found: dict | None = None, verify: bool = False
) -> Profiles:
    """Every exit profile's rules (two queries on a miss, and the digest of their rows when
    cached), versioned: a book built with other rules is read again.

    `verify` (the full pass) compares a cached copy's digest with the tables (one small query)
    and reads the rules again, for every process, when they differ: an invalidation lost to a
    Redis outage would otherwise leave the old rules cached for up to PROFILES_TTL_S once
    Redis answers again."""
    cached, gens = _cached(PROFILES, [PROFILES_GEN], found) if use_cache else (None, ())
    # The digest before the rules: a change committed between the two leaves a digest older
    # than the rules, which the next check finds stale and reads again; never stale rules
    # passing.
    stamp = _profiles_stamp() if use_cache and (cached is None or verify) else None
    if cached is not None:
        if stamp is None or stamp == cached.stamp:
            return cached
        logger.warning(
            "trading.profiles_stale: the cached exit rules differ from the tables "
            "(an invalidation was lost); read again"
        )
        gens = _bump([PROFILES_GEN])
    fresh = Profiles(
        version=time.time_ns(),
        stamp=stamp,
        rules={
            p.pk: profile_rules(p, p.tiers.all())
            for p in ExitProfile.objects.prefetch_related("tiers")
        },
    )
    if use_cache and gens is not None:
        _store(PROFILES, gens, fresh, PROFILES_TTL_S)
    return fresh


_PROFILES_STAMP = """
SELECT md5(concat_ws('|',
    (SELECT string_agg(p::text, ',' ORDER BY p.id) FROM {profile} p),
    (SELECT string_agg(t::text, ',' ORDER BY t.id) FROM {tier} t)))
"""


def _profiles_stamp() -> str | None:
    """A digest of every profile and tier row, whatever changed them."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PROFILES_STAMP.format(
                profile=ExitProfile._meta.db_table, tier=TakeProfitTier._meta.db_table
            )
        )
        return cursor.fetchone()[0]


def profiles_changed() -> None:
    after_commit(lambda: _bump([PROFILES_GEN]))


# --- the book of managed positions -------------------------------------------------------------

_BOOK_ROWS = """
SELECT p.id, p.symbol, s.profile_id, (p.opened_at AT TIME ZONE 'Asia/Seoul')::date, p.qty,
       p.reserved_qty, p.avg_price, s.high_water_mark, s.peak_qty, s.tiers_done
FROM {states} s JOIN {positions} p ON p.id = s.position_id
WHERE p.status = 'OPEN' AND p.qty > 0 AND s.paused_at IS NULL {and_symbols}
"""


def _book_rows(symbols: list[str] | None):
    """The managed open positions' rows, in one plain statement, as for the prices."""
    sql = _BOOK_ROWS.format(
        states=PositionExitState._meta.db_table,
        positions=Position._meta.db_table,
        and_symbols="" if symbols is None else "AND p.symbol = ANY(%s)",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [] if symbols is None else [symbols])
        return cursor.fetchall()


def book_from_db(rules: Profiles, symbols: list[str] | None = None) -> list[Watch]:
    """Read the managed open positions (one query) and compute their quiet bands."""
    book = []
    for pid, symbol, profile_id, opened, qty, reserved, avg, hwm, peak, done in _book_rows(symbols):
        holding = Holding(
            qty=qty,
            available=qty - reserved,
            avg_price=avg,
            high_water_mark=hwm,
            peak_qty=peak,
            tiers_done=done,
        )
        band = screen_band(rules.rules[profile_id], holding)
        book.append(
            Watch(
                pid,
                symbol,
                profile_id,
                band.low,
                band.high,
                opened.toordinal(),
                qty,
                qty - reserved,
                str(avg),
                hwm,
                peak,
                done,
            )
        )
    return book


def book(
    rules: Profiles,
    symbols: list[str] | None = None,
    *,
    use_cache: bool = True,
    found: dict | None = None,
) -> Book:
    """The book for every symbol (None) or for one symbol's ticks ([symbol]). Several symbols
    at once are read from the database, never cached."""
    keys: tuple[str, str] | None = None  # the book's cache key and its generation's
    if use_cache and symbols is None:
        keys = BOOK, BOOK_GEN
    elif use_cache and symbols is not None and len(symbols) == 1:
        keys = book_key(symbols[0]), book_gen_key(symbols[0])
    if keys is None:
        return Book.of(book_from_db(rules, symbols))
    key, gen = keys
    cached, gens = _cached(key, [gen], found if symbols is not None else None)
    if cached is not None and cached[0] == rules.version:
        return cached[1]
    fresh = Book.of(book_from_db(rules, symbols))
    _store(key, gens, (rules.version, fresh), BOOK_TTL_S)
    return fresh


def positions_changed(symbols) -> None:
    """After the commit, move on the generations of the books these symbols' positions are in,
    so no copy read before the commit is used again."""
    gens = [BOOK_GEN, *(book_gen_key(s) for s in set(symbols))]
    after_commit(lambda: _bump(gens))


# --- GAP_DOWN thresholds from the pre-queue ----------------------------------------------------


def gap_thresholds_keep(day: dt.date, thresholds: dict[int, Decimal], ttl: float) -> None:
    cache_set(gap_key(day), thresholds, ttl)


def gap_thresholds(day: dt.date) -> dict[int, Decimal]:
    return cache_get(gap_key(day)) or {}
