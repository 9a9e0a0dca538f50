"""A symbol's day as an inline SVG line: the minute closes, the best price after them, entries ▲
and exits ▼ at their fill prices, and the average cost dashed. Drawn on the server, so the page
needs no script library; pure: points in, markup out."""

import datetime as dt
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from core import clock

WIDTH, HEIGHT = 520, 150
PAD_LEFT, PAD_RIGHT, PAD_Y = 64, 8, 14


@dataclass(frozen=True)
class Mark:
    at: dt.datetime
    price: int
    buy: bool
    label: str


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def day_chart(
    symbol: str,
    line: list[tuple[dt.datetime, int]],
    marks: list[Mark],
    *,
    avg_price: float | None = None,
) -> SafeString:
    """The SVG of `line` ((time, price), oldest first) with `marks`; a note when empty."""
    if not line and not marks:
        return format_html(
            '<p class="desk-empty">{}</p>',
            _("%(symbol)s: no prices yet today.") % {"symbol": symbol},
        )
    times = [t for t, _ in line] + [m.at for m in marks]
    prices: list[float] = [float(p) for _, p in line] + [float(m.price) for m in marks]
    if avg_price:
        prices.append(avg_price)
    t0, t1 = min(times).timestamp(), max(times).timestamp()
    if t1 - t0 < 60:
        t1 = t0 + 60
    x = _scale(t0, t1, PAD_LEFT, WIDTH - PAD_RIGHT)
    y = _scale(min(prices), max(prices), HEIGHT - PAD_Y, PAD_Y)
    points = " ".join(f"{x(t.timestamp()):.1f},{y(p):.1f}" for t, p in line)
    parts = [
        format_html(
            '<svg class="desk-chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
            'aria-label="{}">',
            WIDTH,
            HEIGHT,
            WIDTH,
            HEIGHT,
            symbol,
        ),
        format_html(
            '<text x="2" y="{}" class="axis">{}</text><text x="2" y="{}" class="axis">{}</text>',
            PAD_Y + 4,
            f"{max(prices):,.0f}",
            HEIGHT - PAD_Y + 4,
            f"{min(prices):,.0f}",
        ),
        format_html(
            '<text x="{}" y="{}" class="axis">{}</text><text x="{}" y="{}" class="axis" '
            'text-anchor="end">{}</text>',
            PAD_LEFT,
            HEIGHT - 1,
            _hm(min(times)),
            WIDTH - PAD_RIGHT,
            HEIGHT - 1,
            _hm(max(times)),
        ),
    ]
    if avg_price:
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="avg"><title>avg {}</title></line>',
                PAD_LEFT,
                WIDTH - PAD_RIGHT,
                f"{y(avg_price):.1f}",
                f"{y(avg_price):.1f}",
                f"{avg_price:,.0f}",
            )
        )
    if points:
        parts.append(format_html('<polyline points="{}" class="price"/>', points))
    parts.append(
        format_html_join(
            "",
            '<path d="M{},{} l-5,{} h10 z" class="{}"><title>{}</title></path>',
            (
                (
                    f"{x(m.at.timestamp()):.1f}",
                    f"{y(m.price):.1f}",
                    8 if m.buy else -8,
                    "buy" if m.buy else "sell",
                    f"{_hm(m.at)} {m.price:,} {m.label}",
                )
                for m in marks
            ),
        )
    )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def _hm(at: dt.datetime) -> str:
    return at.astimezone(clock.SEOUL).strftime("%H:%M:%S")
