"""What the trader reads: short texts, in English, marked for translation. KRW amounts carry
thousands separators, times are Seoul's to the second. The first line of each says what
happened (an e-mail's subject); the next ones, the detail."""

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core import clock

from ..models import IntentType, Side

RULES: dict[str, Any] = {
    IntentType.ENTRY: gettext_lazy("entry"),
    IntentType.EXIT_STOP_LOSS: gettext_lazy("stop loss"),
    IntentType.EXIT_TAKE_PROFIT: gettext_lazy("take profit"),
    IntentType.EXIT_TRAILING: gettext_lazy("trailing stop"),
    IntentType.EXIT_TIME: gettext_lazy("time exit"),
    IntentType.EXIT_MAX_HOLD: gettext_lazy("maximum holding days"),
    IntentType.GAP_DOWN: gettext_lazy("gap down"),
    IntentType.FLATTEN: gettext_lazy("flatten"),
    IntentType.MANUAL: gettext_lazy("manual"),
}


def rule_name(intent_type: str) -> str:
    """An intent type's name, as the trader reads it: "stop loss"."""
    return str(RULES.get(intent_type, intent_type))


def kst(at: dt.datetime) -> str:
    return _("%(time)s KST") % {"time": at.astimezone(clock.SEOUL).strftime("%H:%M:%S")}


def krw(value: int | Decimal) -> str:
    return _("%(amount)s KRW") % {"amount": f"{int(value):,}"}


def signed_krw(value: int | Decimal) -> str:
    return _("%(amount)s KRW") % {"amount": f"{int(value):+,}".replace("-", "−")}


def _lines(head: str, parts: Iterable[str]) -> str:
    return f"{head}\n{' · '.join(p for p in parts if p)}"


def fill(
    *,
    symbol: str,
    side: str,
    qty: int,
    price: int,
    amount: int,
    at: dt.datetime,
    intent_type: str | None,
    reason: str,
    order_filled: int,
    order_qty: int,
    net_pnl: Decimal | None,
) -> str:
    """A fill: what was bought or sold, at what price, for which order (its reason), and for a
    sell the P&L it realised net of its fee and tax."""
    values = {"symbol": symbol, "qty": f"{qty:,}", "price": krw(price)}
    head = (
        _("Fill %(symbol)s: bought %(qty)s at %(price)s")
        if side == Side.BUY
        else _("Fill %(symbol)s: sold %(qty)s at %(price)s")
    ) % values
    why = reason
    if intent_type is not None:
        name = rule_name(intent_type)
        if intent_type not in (IntentType.ENTRY, IntentType.MANUAL):
            name = _("exit, %(rule)s") % {"rule": name}
        why = f"{name}: {reason}" if reason else name
    return _lines(
        head,
        [
            krw(amount),
            why,
            _("realised %(pnl)s net of costs") % {"pnl": signed_krw(net_pnl)}
            if net_pnl is not None
            else "",
            _("order %(filled)s of %(qty)s filled")
            % {"filled": f"{order_filled:,}", "qty": f"{order_qty:,}"}
            if order_filled < order_qty
            else "",
            kst(at),
        ],
    )


def exit_decided(
    *,
    symbol: str,
    intent_type: str,
    qty: int,
    reason: str,
    limit_price: int | None,
    venue: str,
    at: dt.datetime,
) -> str:
    """An exit decided: its rule, what it sells, and why (the rule's reason)."""
    head = _("Exit %(symbol)s: %(rule)s, selling %(qty)s") % {
        "symbol": symbol,
        "rule": rule_name(intent_type),
        "qty": f"{qty:,}",
    }
    price = (
        _("limit %(price)s") % {"price": krw(limit_price)}
        if limit_price is not None
        else _("market order")
    )
    return _lines(head, [reason, price, venue if venue != "KRX" else "", kst(at)])


def refusal(*, gate: str, reason: str) -> str:
    """One refused pick's row (summed up with others by `refusals`): "gate: reason"."""
    return f"{gate}: {reason}"


# Figures (prices, sizes, times, symbols) stand apart refusals of one kind: left out, refusals
# of the same gate and reason count together.
_FIGURES = re.compile(r"\d[\d,.:]*")


def refusals(texts: Sequence[str], first: dt.datetime, last: dt.datetime) -> str:
    """Refused picks summed up: how many, when, and how many per gate and reason (the three
    most frequent reasons of each gate)."""
    by_gate: dict[str, Counter] = defaultdict(Counter)
    for text in texts:
        gate, _sep, reason = text.partition(": ")
        by_gate[gate][_FIGURES.sub("…", reason)] += 1
    head = _("Picks refused: %(count)s, %(first)s–%(last)s") % {
        "count": f"{len(texts):,}",
        "first": first.astimezone(clock.SEOUL).strftime("%H:%M:%S"),
        "last": kst(last),
    }
    lines = [head]
    for gate in sorted(by_gate):
        reasons = by_gate[gate]
        shown = "; ".join(f"{reason} ×{n}" for reason, n in reasons.most_common(3))
        more = len(reasons) - 3
        if more > 0:
            shown += "; " + _("%(count)s more") % {"count": more}
        lines.append(f"{gate}: {sum(reasons.values()):,} — {shown}")
    return "\n".join(lines)


def close(
    *,
    day: dt.date,
    realised: Decimal,
    costs: int,
    orders: int,
    buys: int,
    sells: int,
    fills: int,
    latency_ms: tuple[float, float, int] | None,
    held: int,
    more: Sequence[str],
) -> str:
    """The day's close: realised P&L net of fees and tax, trades, order latency, what is held,
    and what the apps above add (refused picks)."""
    head = _("Day close %(day)s: %(pnl)s realised net") % {
        "day": f"{day:%Y-%m-%d}",
        "pnl": signed_krw(realised - costs),
    }
    lines = [
        head,
        _("%(gross)s before %(costs)s of fees and tax")
        % {"gross": signed_krw(realised), "costs": krw(costs)},
        _("%(orders)s orders filled (%(buys)s buys, %(sells)s sells; %(fills)s fills)")
        % {"orders": orders, "buys": buys, "sells": sells, "fills": fills},
        *more,
    ]
    if latency_ms is not None:
        p50, p99, n = latency_ms
        lines.append(
            _("Intent to order accepted: p50 %(p50)s ms, p99 %(p99)s ms (%(n)s orders)")
            % {"p50": f"{p50:,.1f}", "p99": f"{p99:,.1f}", "n": f"{n:,}"}
        )
    lines.append(_("Positions held: %(count)s") % {"count": held})
    return "\n".join(lines)


def batch_subject(first_text: str, count: int) -> str:
    """An e-mail's subject for `count` notifications sent together."""
    first = first_text.partition("\n")[0]
    return (
        first
        if count == 1
        else _("%(first)s (+%(more)s more)")
        % {
            "first": first,
            "more": count - 1,
        }
    )
