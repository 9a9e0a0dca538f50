"""The invariant checker: pure functions over a snapshot of the ledger and the simulator's book.

`snapshot_take()` reads both (the ledger through the ORM, the book through /_sim/book); `check()`
takes the snapshot apart and never touches anything, so it can be fed made-up snapshots in
tests (tests/drill/test_invariants.py).

What it checks (issue 23, "make drill"):
  - every ledger order with a broker number maps to exactly one order at the simulator;
  - no order at the simulator is unknown to the ledger (the drill places none of its own, so
    each such order is an extra send: counted as a duplicate);
  - at most one order per intent reached the broker (more: duplicates);
  - Position.reserved_qty equals the shares its NEW SELL intents and the unfilled remainders of
    its open SELL orders hold (execution/services/intents.py and orders.py: an intent reserves
    its qty when it opens, its order carries that reservation for its remainder);
  - the ledger's open quantities equal the broker's holdings;
  - no order stays NEW past 90 s (nor an intent, unless trading is HALTED, which holds them);
  - lost: an intent decided whose order never reached the simulator, that is not still working
    (NEW, or an open order) and was not refused (rejected or cancelled with a reason); and an
    exit the scenario expected that was never decided nor sent.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

NEW_MAX_AGE_S = 90
OPEN_ORDER = ("NEW", "SUBMITTED", "PARTIAL_FILLED")


@dataclass(frozen=True)
class LedgerPosition:
    id: int
    symbol: str
    status: str
    qty: int
    reserved_qty: int


@dataclass(frozen=True)
class LedgerIntent:
    id: str
    position_id: int
    symbol: str
    side: str
    qty: int
    status: str
    created_at: dt.datetime
    closed_reason: str = ""


@dataclass(frozen=True)
class LedgerOrder:
    id: str
    intent_id: str | None
    position_id: int
    symbol: str
    side: str
    qty: int
    filled_qty: int
    status: str
    broker_order_no: str | None
    trade_date: str | None  # YYYYMMDD
    created_at: dt.datetime
    reject_reason: str = ""


@dataclass(frozen=True)
class BrokerOrder:
    odno: str
    ord_dt: str  # YYYYMMDD
    pdno: str
    side: str  # BUY or SELL
    qty: int
    filled_qty: int
    kind: str = "new"  # new, modify or cancel (only "new" orders are sends of an intent)


@dataclass
class Snapshot:
    taken_at: dt.datetime
    trading_state: str
    positions: list[LedgerPosition]
    intents: list[LedgerIntent]
    orders: list[LedgerOrder]
    broker_orders: list[BrokerOrder]
    broker_holdings: dict[str, int]
    # Symbols whose exit the scenario caused and expects to see sent (for "lost").
    expected_exits: tuple[str, ...] = ()


@dataclass
class Verdict:
    duplicates: int = 0
    lost: int = 0
    orders: int = 0  # orders at the simulator (new orders, not cancels or modifications)
    violations: list[str] = field(default_factory=list)

    @property
    def invariants_held(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict:
        return asdict(self) | {"invariants_held": self.invariants_held}


def check(snap: Snapshot, *, new_max_age_s: float = NEW_MAX_AGE_S) -> Verdict:
    verdict = Verdict()
    v = verdict.violations
    sends = [b for b in snap.broker_orders if b.kind == "new"]
    verdict.orders = len(sends)
    at_broker: dict[tuple[str, str], list[BrokerOrder]] = defaultdict(list)
    for b in sends:
        at_broker[(b.ord_dt, b.odno)].append(b)
    dates = {b.ord_dt for b in sends}

    # 1. every ledger order with a broker number maps to exactly one order at the simulator.
    claimed: set[tuple[str, str]] = set()
    claims = Counter()
    reached_orders: set[str] = set()
    for o in snap.orders:
        if not o.broker_order_no:
            continue
        keys = (
            [(o.trade_date, o.broker_order_no)]
            if o.trade_date
            else [(d, o.broker_order_no) for d in dates]
        )
        found = [k for k in keys if at_broker.get(k)]
        if len(found) != 1 or len(at_broker[found[0]]) != 1:
            v.append(
                f"order {o.id} ({o.symbol}) has broker number {o.broker_order_no} but "
                f"{sum(len(at_broker[k]) for k in found)} orders at the simulator"
            )
            continue
        b = at_broker[found[0]][0]
        if b.pdno != o.symbol or b.side != o.side or b.qty != o.qty:
            v.append(
                f"order {o.id} {o.side} {o.symbol} ×{o.qty} maps to a different order at "
                f"the simulator: {b.side} {b.pdno} ×{b.qty} (odno {b.odno})"
            )
        claims[found[0]] += 1
        claimed.add(found[0])
        reached_orders.add(o.id)
    for key, n in claims.items():
        if n > 1:
            v.append(f"{n} ledger orders claim the one simulator order {key[1]}")
            verdict.duplicates += n - 1

    # 2. none at the simulator is unknown to the ledger: each is a send the ledger lost track of.
    unknown = [b for key, bs in at_broker.items() if key not in claimed for b in bs]
    unknown += [b for key, bs in at_broker.items() if key in claimed for b in bs[1:]]
    for b in unknown:
        v.append(
            f"order {b.odno} at the simulator ({b.side} {b.pdno} ×{b.qty}) is unknown to the ledger"
        )
    verdict.duplicates += len(unknown)

    # 3. at most one order per intent reached the broker.
    per_intent = Counter(o.intent_id for o in snap.orders if o.intent_id and o.id in reached_orders)
    for intent_id, n in per_intent.items():
        if n > 1:
            v.append(f"intent {intent_id} reached the broker {n} times")
            verdict.duplicates += n - 1

    # 4. reserved_qty equals the rows.
    held = defaultdict(int)
    for i in snap.intents:
        if i.side == "SELL" and i.status == "NEW":
            held[i.position_id] += i.qty
    for o in snap.orders:
        if o.side == "SELL" and o.status in OPEN_ORDER:
            held[o.position_id] += o.qty - o.filled_qty
    for p in snap.positions:
        if p.reserved_qty != held[p.id]:
            v.append(
                f"position {p.id} ({p.symbol}) reserved_qty {p.reserved_qty} but its open "
                f"SELL intents and orders hold {held[p.id]}"
            )
        if p.reserved_qty < 0 or p.reserved_qty > p.qty:
            v.append(
                f"position {p.id} ({p.symbol}) reserved_qty {p.reserved_qty} outside 0..qty {p.qty}"
            )

    # 5. the ledger's quantities equal the broker's holdings.
    ledger_qty = defaultdict(int)
    for p in snap.positions:
        if p.status == "OPEN":
            ledger_qty[p.symbol] += p.qty
    for symbol in sorted(set(ledger_qty) | set(snap.broker_holdings)):
        broker = snap.broker_holdings.get(symbol, 0)
        if ledger_qty[symbol] != broker:
            v.append(f"{symbol}: ledger holds {ledger_qty[symbol]}, the broker {broker}")

    # 6. nothing stays NEW past the limit.
    limit = dt.timedelta(seconds=new_max_age_s)
    for o in snap.orders:
        if o.status == "NEW" and snap.taken_at - o.created_at > limit:
            v.append(
                f"order {o.id} ({o.symbol}) NEW for "
                f"{(snap.taken_at - o.created_at).total_seconds():.0f} s"
            )
    if snap.trading_state != "HALTED":
        for i in snap.intents:
            if i.status == "NEW" and snap.taken_at - i.created_at > limit:
                v.append(
                    f"intent {i.id} ({i.symbol}) NEW for "
                    f"{(snap.taken_at - i.created_at).total_seconds():.0f} s"
                )

    # 7. lost: decided, never reached the broker, not working, not refused.
    orders_of = defaultdict(list)
    for o in snap.orders:
        orders_of[o.intent_id].append(o)
    reached_symbols = {b.pdno for b in sends}
    working_symbols = set()
    for i in snap.intents:
        mine = orders_of.get(i.id, [])
        working = i.status == "NEW" or any(o.status in OPEN_ORDER for o in mine)
        if working:
            working_symbols.add(i.symbol)
        if any(o.id in reached_orders for o in mine) or working:
            continue
        refused = (i.status in ("REJECTED", "CANCELLED") and (i.closed_reason or not mine)) or (
            mine and all(o.status in ("REJECTED", "CANCELLED") and o.reject_reason for o in mine)
        )
        if i.status == "ORDERED" and not mine:
            refused = False
        if not refused:
            v.append(
                f"intent {i.id} ({i.side} {i.symbol} ×{i.qty}, {i.status}) never reached "
                f"the broker and nothing is working on it: lost"
            )
            verdict.lost += 1
    decided = {i.symbol for i in snap.intents}
    for symbol in snap.expected_exits:
        if symbol not in decided and symbol not in reached_symbols:
            v.append(f"{symbol}: the scenario's exit was never decided nor sent: lost")
            verdict.lost += 1
    return verdict


# --- taking a snapshot (Django set up, the simulator running) --------------------------------
def _yyyymmdd(day: dt.date | None) -> str | None:
    return day.strftime("%Y%m%d") if day else None


def snapshot_take(
    book: dict,
    *,
    cano: str,
    since: dt.datetime | None = None,
    expected_exits: tuple[str, ...] = (),
    taken_at: dt.datetime | None = None,
) -> Snapshot:
    """The ledger now (rows created at or after `since` for intents and orders), and the
    simulator's `book` (GET /_sim/book) for account `cano`."""
    from core import clock
    from execution.models import Order, OrderIntent, Position, TradingState

    intents_qs = OrderIntent.objects.all()
    orders_qs = Order.objects.all()
    if since is not None:
        intents_qs = intents_qs.filter(created_at__gte=since)
        orders_qs = orders_qs.filter(created_at__gte=since)
    state = (
        TradingState.objects.filter(pk=TradingState.SINGLETON_PK)
        .values_list("state", flat=True)
        .first()
        or "ACTIVE"
    )
    positions = [
        LedgerPosition(
            id=p.id, symbol=p.symbol, status=p.status, qty=p.qty, reserved_qty=p.reserved_qty
        )
        for p in Position.objects.all()
    ]
    intents = [
        LedgerIntent(
            id=str(i.id),
            position_id=i.position_id,
            symbol=i.symbol,
            side=i.side,
            qty=i.qty,
            status=i.status,
            created_at=i.created_at,
            closed_reason=i.closed_reason,
        )
        for i in intents_qs
    ]
    orders = [
        LedgerOrder(
            id=str(o.id),
            intent_id=str(o.intent_id) if o.intent_id else None,
            position_id=o.position_id,
            symbol=o.symbol,
            side=o.side,
            qty=o.qty,
            filled_qty=o.filled_qty,
            status=o.status,
            broker_order_no=o.broker_order_no or None,
            trade_date=_yyyymmdd(o.trade_date),
            created_at=o.created_at,
            reject_reason=o.reject_reason,
        )
        for o in orders_qs
    ]
    broker_orders = [
        BrokerOrder(
            odno=b["odno"],
            ord_dt=b["ord_dt"],
            pdno=b["pdno"],
            side=b["side"],
            qty=b["qty"],
            filled_qty=b["filled_qty"],
            kind=b.get("kind", "new"),
        )
        for b in book["orders"]
        if b["cano"] == cano
    ]
    holdings: dict[str, int] = {}
    for acct in book["accounts"]:
        if acct["cano"] == cano:
            holdings = {h["pdno"]: h["qty"] for h in acct["holdings"]}
    return Snapshot(
        taken_at=taken_at or clock.now(),
        trading_state=state,
        positions=positions,
        intents=intents,
        orders=orders,
        broker_orders=broker_orders,
        broker_holdings=holdings,
        expected_exits=tuple(expected_exits),
    )
