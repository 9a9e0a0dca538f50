"""Volatility interruptions (VI) as KIS's trade feed reports them.

When a trade would print too far from the last one (a dynamic VI) or from the last single price
(a static VI), KRX stops continuous trading in the symbol for a two-minute call auction, ended
at a random moment within thirty seconds after (docs/market-day.md gives the thresholds and
sources). KIS's trade feeds then carry the auction's expected price with HOUR_CLS_CODE "C"
(after 09:00, an expected price, VI triggered) and VI_STND_PRC, the static VI's base; the
auction's single price prints as a trade again.

The feed marks a symbol when an expected price of a VI arrives and clears it with the next
trade. The mark is kept in the cache, where every process that decides exits reads it, and only
when an exit is decided: never on the way of a quiet trade. It lapses by itself after
MARK_TTL_S, so a trade the feed missed never leaves a symbol in a VI for good. While the cache
fails, no symbol reads as in a VI: the exit goes out as it would without one, an order KRX takes
into the auction.
"""

import datetime as dt
from typing import NamedTuple

from django.utils.translation import gettext

from core.clock import SEOUL
from core.hotcache import cache_delete_many, cache_get, cache_get_many, cache_set

# KIS's HOUR_CLS_CODE for "after 09:00, an expected price, VI triggered".
HOUR_CLASS_VI = "C"
# Two minutes and at most thirty seconds more, with a margin.
MARK_TTL_S = 180.0


class Vi(NamedTuple):
    """A VI under way: since when the feed has seen it (epoch seconds), the auction's latest
    expected price and the static VI's base (0: not given)."""

    since: float
    expected: int
    reference: int

    def describe(self) -> str:
        """The VI as a person reads it (in an exit's reason and alerts), in the process's
        language."""
        figures = {
            "since": f"{dt.datetime.fromtimestamp(self.since, SEOUL):%H:%M:%S}",
            "expected": f"{self.expected:,}",
            "reference": f"{self.reference:,}",
        }
        if self.reference:
            return (
                gettext(
                    "in a volatility interruption since %(since)s (call auction, expected "
                    "%(expected)s, static base %(reference)s)"
                )
                % figures
            )
        return (
            gettext(
                "in a volatility interruption since %(since)s (call auction, expected %(expected)s)"
            )
            % figures
        )


def vi_key(symbol: str) -> str:
    return f"vi:{symbol}"


def vi_mark(symbol: str, *, expected: int, reference: int, at: dt.datetime) -> Vi:
    """An expected price of a VI's auction: the symbol is in a VI (since the first one)."""
    known = cache_get(vi_key(symbol))
    since = known[0] if isinstance(known, tuple) and len(known) == 3 else at.timestamp()
    vi = Vi(since, expected, reference)
    cache_set(vi_key(symbol), tuple(vi), MARK_TTL_S)
    return vi


def vi_clear(symbol: str) -> None:
    """A trade: the symbol's VI, if any, has ended."""
    cache_delete_many([vi_key(symbol)])


def vis_of(symbols: list[str]) -> dict[str, Vi]:
    """The VIs of those of `symbols` in one, in one round trip (none while the cache fails)."""
    found = cache_get_many([vi_key(s) for s in symbols])
    return {
        s: Vi(*known)
        for s in symbols
        if isinstance(known := found.get(vi_key(s)), tuple) and len(known) == 3
    }
