"""What the desk shows, read from the ledger at one moment of the one clock: the day's positions
valued at their best prices, realised P&L net of fees and tax by day and by pick source, the
orders in flight, the trading state and the KIS circuit, and the last hour's order latency.
Reads only: every change goes through the ledger's services (desk/views.py)."""

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Max, Q
from django.utils.translation import gettext as _

from core import clock
from execution.exports import Totals, seoul_day, totals_by
from execution.models import Alert, Fill, Order, Position, TradingState
from execution.selectors import circuits_last
from market.bars import bars_of
from market.models import BestPrice
from market.prices import price_rows
from market.symbols import names_of

DAYS_SHOWN = 7
LATENCY_WINDOW = dt.timedelta(hours=1)
# Upper edges of the latency histogram's bins, ms; the last bin is everything above.
LATENCY_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
NO_SOURCE = "-"


@dataclass
class Row:
    """One position as the desk shows it."""

    position: Position
    last: int | None
    last_at: dt.datetime | None
    profile: str
    source: str
    paused: bool
    name: str = ""
    paused_by: str = ""  # who paused its exits: a person's name, or KIS on a refusal

    @property
    def market_value(self) -> int | None:
        return None if self.last is None else self.last * self.position.qty

    @property
    def unrealized(self) -> Decimal | None:
        if self.last is None or not self.position.qty:
            return None
        return (self.last - self.position.avg_price) * self.position.qty

    @property
    def unrealized_pct(self) -> Decimal | None:
        avg = self.position.avg_price
        if self.last is None or not self.position.qty or not avg:
            return None
        return (self.last - avg) / avg * 100


@dataclass
class Histogram:
    name: str
    values: list[float]
    bins: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        counts = Counter(_bin(v) for v in self.values)
        labels = [f"≤{e:,}" for e in LATENCY_EDGES_MS] + [f">{LATENCY_EDGES_MS[-1]:,}"]
        self.bins = [(label, counts.get(i, 0)) for i, label in enumerate(labels)]

    @property
    def peak(self) -> int:
        return max((n for _, n in self.bins), default=0)

    def quantile(self, q: float) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def quantile_50(self) -> float | None:
        return self.quantile(50)

    @property
    def quantile_99(self) -> float | None:
        return self.quantile(99)


def _bin(ms: float) -> int:
    for i, edge in enumerate(LATENCY_EDGES_MS):
        if ms <= edge:
            return i
    return len(LATENCY_EDGES_MS)


@dataclass
class Board:
    now: dt.datetime
    day: dt.date
    rows: list[Row]
    by_day: list[tuple[dt.date, Totals]]
    by_source: list[tuple[str, Totals]]
    in_flight: list[Order]
    state: TradingState | None
    breakers: list[Alert]
    feed_at: dt.datetime | None
    latency: list[Histogram]
    fills_today: list[Fill]
    names: dict[str, str] = field(default_factory=dict)  # stock names by code

    @property
    def midnight(self) -> dt.datetime:
        return seoul_midnight(self.day)

    @property
    def today(self) -> Totals | None:
        return dict(self.by_day).get(self.day)

    @property
    def held(self) -> list[Row]:
        return [r for r in self.rows if r.position.qty]

    @property
    def market_value(self) -> int:
        return sum(r.market_value or 0 for r in self.held)

    @property
    def unrealized(self) -> Decimal:
        return sum((r.unrealized or Decimal(0) for r in self.held), Decimal(0))

    @property
    def unpriced(self) -> list[str]:
        return [r.position.symbol for r in self.held if r.last is None]

    @property
    def halted(self) -> bool:
        return self.state is not None and self.state.in_force == TradingState.State.HALTED


def seoul_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), clock.SEOUL)


def board_read() -> Board:
    now = clock.now()
    day = now.astimezone(clock.SEOUL).date()
    midnight = seoul_midnight(day)
    positions = list(
        Position.objects.filter(Q(status=Position.Status.OPEN) | Q(closed_at__gte=midnight))
        .select_related("exit_state__profile", "opener")
        .order_by("symbol", "opened_at")
    )
    symbols = sorted({p.symbol for p in positions})
    prices = dict(price_rows(symbols))
    in_flight = list(
        Order.objects.filter(status__in=Order.OPEN_STATUSES)
        .select_related("intent")
        .order_by("created_at")
    )
    names = names_of(set(symbols) | {o.symbol for o in in_flight})
    rows = []
    for p in positions:
        px = prices.get(p.symbol)
        state = getattr(p, "exit_state", None)
        opener = getattr(p, "opener", None)
        rows.append(
            Row(
                position=p,
                last=px.price if px else None,
                last_at=dt.datetime.fromtimestamp(px.at, dt.UTC) if px else None,
                profile=state.profile.name if state else "",
                source=opener.source_id if opener else NO_SOURCE,
                paused=bool(state and state.paused_at),
                name=names.get(p.symbol, ""),
                paused_by=state.paused_by if state and state.paused_at else "",
            )
        )
    fills = list(
        Fill.objects.filter(filled_at__gte=midnight - dt.timedelta(days=DAYS_SHOWN - 1))
        .select_related("order__position__opener")
        .order_by("filled_at")
    )
    by_day = sorted(totals_by(fills, seoul_day).items(), reverse=True)
    today = [f for f in fills if f.filled_at >= midnight]
    by_source = sorted(totals_by(today, _source).items())
    return Board(
        now=now,
        day=day,
        rows=rows,
        by_day=by_day,
        by_source=by_source,
        in_flight=in_flight,
        state=TradingState.objects.filter(pk=TradingState.SINGLETON_PK).first(),
        breakers=circuits_last(),
        feed_at=BestPrice.objects.aggregate(at=Max("event_at"))["at"],
        latency=latency_read(now),
        fills_today=today,
        names=names,
    )


def _source(fill: Fill) -> str:
    opener = getattr(fill.order.position, "opener", None)
    return opener.source_id if opener else NO_SOURCE


def latency_read(now: dt.datetime) -> list[Histogram]:
    """The last hour's orders KIS accepted: ms from the triggering event, and from the intent
    being written, to KIS's acceptance."""
    orders = Order.objects.filter(
        submitted_at__gte=now - LATENCY_WINDOW, submitted_at__lte=now, intent__isnull=False
    ).values_list("submitted_at", "intent__event_at", "intent__created_at")
    from_event, from_intent = [], []
    for submitted, event_at, created_at in orders:
        assert submitted is not None  # filtered on
        from_event.append((submitted - event_at).total_seconds() * 1000)
        from_intent.append((submitted - created_at).total_seconds() * 1000)
    return [
        Histogram(_("event → accepted"), from_event),
        Histogram(_("intent → accepted"), from_intent),
    ]


def charts_read(board: Board) -> dict[str, tuple[list, list[Fill]]]:
    """Per symbol of the day's rows: its bars since the Seoul midnight and the day's fills."""
    symbols = sorted({r.position.symbol for r in board.rows})
    bars = bars_of(symbols, board.midnight)
    fills: dict[str, list[Fill]] = {s: [] for s in symbols}
    for f in board.fills_today:
        if f.order.symbol in fills:
            fills[f.order.symbol].append(f)
    return {s: (bars[s], fills[s]) for s in symbols}
