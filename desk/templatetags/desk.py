"""Figures as a trader reads them: KRW whole, with separators; times in Seoul with seconds."""

import datetime as dt
from decimal import Decimal

from django import template

from core import clock
from desk.board import board_read

register = template.Library()


@register.filter
def krw(value) -> str:
    """12,345 KRW as "12,345"; "-" for none."""
    if value is None or value == "":
        return "-"
    return f"{Decimal(value):,.0f}"


@register.filter
def signed_krw(value) -> str:
    """A P&L: "+12,345", "-330,000", "0"."""
    if value is None or value == "":
        return "-"
    return f"{Decimal(value):+,.0f}" if Decimal(value) else "0"


@register.filter
def pct(value) -> str:
    return "-" if value is None else f"{Decimal(value):+.2f}%"


@register.filter
def kst(value) -> str:
    """A time in Seoul to the second."""
    if not isinstance(value, dt.datetime):
        return "-"
    return value.astimezone(clock.SEOUL).strftime("%H:%M:%S")


@register.filter
def tone(value) -> str:
    """The CSS class of a P&L's sign."""
    if value is None or value == "":
        return ""
    return "up" if Decimal(value) > 0 else "down" if Decimal(value) < 0 else ""


@register.filter
def name_of(names: dict, code: str) -> str:
    """The stock's name, "" when unknown."""
    return names.get(code, "")


@register.filter
def share(count: int, peak: int) -> int:
    """A histogram bar's width in percent of the highest."""
    return round(100 * count / peak) if peak else 0


@register.inclusion_tag("desk/cards.html")
def desk_summary() -> dict:
    """The desk's state strip and figures, for the admin's index."""
    return {"board": board_read()}
