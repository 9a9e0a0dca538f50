"""Argument checks shared by the ledger services: run before any transaction opens."""

import re

from market.calendar import Venue
from market.krx import SYMBOL_PATTERN

from .exceptions import InvalidInput

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
MAX_QTY = 10**12


def check_qty(value: object, field: str = "qty") -> int:
    if type(value) is not int:
        raise InvalidInput(field, f"must be a whole number of shares, got {value!r}.")
    if value <= 0:
        raise InvalidInput(field, f"must be greater than 0, got {value}.")
    if value > MAX_QTY:
        raise InvalidInput(field, f"{value} is beyond any plausible share count.")
    return value


def check_price(value: object, field: str = "limit_price", *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if type(value) is not int:
        raise InvalidInput(field, f"must be a whole number of KRW, got {value!r}.")
    if value <= 0:
        raise InvalidInput(field, f"must be greater than 0, got {value}.")
    return value


def check_symbol(value: object) -> str:
    if not isinstance(value, str) or not _SYMBOL_RE.fullmatch(value):
        raise InvalidInput(
            "symbol", f"{value!r} is not a KRX short code (6 digits or upper-case letters)."
        )
    return value


def check_venue(value: object, *, limit_price: int | None) -> str:
    """An order's venue (market.calendar.Venue); Nextrade takes no market order."""
    if value not in tuple(Venue):
        raise InvalidInput("venue", f"must be one of {', '.join(Venue)}, got {value!r}.")
    if value == Venue.NXT and limit_price is None:
        raise InvalidInput("venue", "Nextrade takes no market order: give a limit_price.")
    return str(value)


def check_key(value: object, field: str = "idempotency_key") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise InvalidInput(field, "must be a non-empty string of at most 128 characters.")
    return value
