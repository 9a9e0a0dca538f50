"""`python -m drill.soak` (`make soak`): a whole trading day and the next open, on a server's
clock, from Nextrade's pre-market to its after-market's close and on to the next open.

The production process set (web, both workers, beat, pricesync, fills, the listener) runs against
the KIS simulator keeping KRX's day on its clock (/_sim/day), every process on one ShiftedClock
started in UTC, from 07:50 KST through the close, the evening and the night to the next trading
day's open. The day is played in segments, each at its own speed: fast where nothing is timed,
real time across each open, where the GAP_DOWN exit is timed in seconds. Between segments the
processes restart on the segment's clock, as a deploy would restart them, each start followed by
the startup reconciliation (compose's `reconcile --startup`).

Prices move in every phase: a stop crossed before the open, a 6 % gap at each open, a stop
crossed after the close and through the evening, a sell left working at the close. Two holdings'
profile allows Nextrade exits: one crosses its stop in the after-market and one in the next
pre-market, each sold there; the others' stops crossed then are sold at KRX's next open. The
verdict (soak/results.json, .md) asserts:

- no order KIS refused for its phase, and none sent where its venue could not trade it;
- no exit decided in a phase, or sent to a venue, its profile excludes;
- each Nextrade exit sold on Nextrade in the session its stop was crossed in;
- one ledger across both venues: the drill's invariants (one order at KIS per order in the
  ledger, reservations equal to the open sells, no oversell);
- the GAP_DOWN pre-queue sent between 08:59:45 and 08:59:59 KST, each day;
- each GAP_DOWN exit accepted by KIS within 2 s of the trade that fired it;
- the day's orders ended at the close, every reservation back by the next open;
- no order between the close and the next morning's opening auction;
- a clean reconciliation before the next open.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import PROCESS_SET, ROOT, Cluster, Services, trading_day
from .runner import _database_fresh, _database_template, _django, services_start
from .scenarios import PRICE, QTY, Options, Run, seed

logger = logging.getLogger("drill.soak")

SOAK_DIR = ROOT / "soak"
# A: crossed its stop before the open (decided at the open); B: gaps 6 % at the first open;
# C: crosses its stop after the close (decided at the next open); D: a sell left working at the
# close; E: gaps 6 % at the next open. Under a profile with Nextrade exits: F crosses its stop
# in the after-market, G in the next pre-market, each sold on Nextrade then.
SYMBOLS = {
    "A": "910001",
    "B": "910002",
    "C": "910003",
    "D": "910004",
    "E": "910005",
    "F": "910006",
    "G": "910007",
}
NXT_HELD = ("F", "G")


@dataclass(frozen=True)
class Segment:
    name: str
    day: int  # 0: the first trading day, 1: the next
    start: str  # "HH:MM:SS", Seoul
    end: str
    speed: float
    # (day, "HH:MM:SS", action name, argument): done when the clock reaches it
    script: tuple[tuple[int, str, str, str], ...] = ()


# A segment's clock reads its start when its processes start, so they come up (about 20 s)
# while it runs; at its end the simulator's clock stands still while they stop. Each segment
# begins and ends in a quiet stretch, and the clock never goes back. The opens run at 2x: the
# GAP_DOWN exit's 2 s are the clock's, one real second.
SEGMENTS = (
    Segment(
        "morning",
        0,
        "07:50:00",
        "08:57:00",
        60,
        (
            (0, "08:00:00", "price", "A:17480"),  # under A's 3 % stop, long before the open
            (0, "08:45:00", "price", "A:17480"),
        ),
    ),
    Segment(
        "first open",
        0,
        "08:57:00",
        "09:02:00",
        2,
        (
            (0, "08:59:30", "price", "B:17860"),  # the opening auction's price: a 6 % gap
        ),
    ),
    Segment(
        "the day",
        0,
        "09:02:00",
        "15:34:00",
        120,
        (
            (0, "10:30:00", "working_sell", "D:22800"),  # +20 %: left working at the close
            (0, "15:25:00", "price", "C:19100"),
        ),
    ),
    Segment(
        "after-market",
        0,
        "15:34:00",
        "16:50:00",
        60,
        (
            (0, "16:10:00", "price", "F:17480"),  # under F's stop in Nextrade's after-market
            (0, "16:20:00", "price", "F:17480"),  # a trade its exit meets
            (0, "16:30:00", "price", "C:17480"),  # under C's stop, after hours
        ),
    ),
    Segment(
        "evening and night",
        0,
        "16:50:00",
        "07:00:00+1",
        600,
        ((0, "20:00:00", "price", "C:17300"),),
    ),
    Segment(
        "before the next open",
        1,
        "07:00:00",
        "08:57:00",
        60,
        (
            (1, "08:10:00", "price", "G:17480"),  # under G's stop in Nextrade's pre-market
            (1, "08:20:00", "price", "G:17480"),
            (1, "08:40:00", "price", "E:17860"),  # the next open's auction: a 6 % gap
        ),
    ),
    Segment("next open", 1, "08:57:00", "09:02:00", 2),
)
# `make test`'s short form (--short): the close with a sell left working and a stop crossed
# after hours, then the next morning's pre-open and open; the night between is skipped (the
# processes stay down across it, as they may on a server).
SHORT = (
    Segment(
        "the close",
        0,
        "14:20:00",
        "15:45:00",
        120,
        (
            # 25 s after the processes start: they are up and send it before the close.
            (0, "15:10:00", "working_sell", "D:22800"),
            (0, "15:41:00", "price", "C:17480"),  # under C's stop, in the after-hours session
            (0, "15:41:00", "price", "F:17480"),  # under F's stop, in Nextrade's after-market
            (0, "15:43:00", "price", "F:17480"),  # a trade its exit meets
        ),
    ),
    Segment(
        "before the next open",
        1,
        "08:45:00",
        "08:58:40",
        60,
        ((1, "08:46:00", "price", "E:17860"),),
    ),
    Segment("next open", 1, "08:58:40", "09:00:30", 2),
)


@dataclass(frozen=True)
class Plan:
    segments: tuple[Segment, ...]
    gaps: tuple[str, ...]  # a GAP_DOWN exit at an open
    stops: tuple[str, ...]  # a stop crossed outside the session, sold in one
    prequeue_days: tuple[int, ...]
    nxt_stops: tuple[str, ...] = ()  # a stop crossed in Nextrade's own session, sold there


PLANS = {
    "full": Plan(
        SEGMENTS, gaps=("B", "E"), stops=("A", "C"), prequeue_days=(0, 1), nxt_stops=("F", "G")
    ),
    "short": Plan(SHORT, gaps=("E",), stops=("C",), prequeue_days=(1,), nxt_stops=("F",)),
}
# The processes that decide or send on their own are stopped first at a segment's end.
STOP_ORDER = ("beat", "pricesync", "execution", "worker", "fills", "listener", "web")


@dataclass
class Soak:
    services: Services
    logs: Path
    days: tuple[dt.date, dt.date]
    plan: Plan = PLANS["full"]
    cluster: Cluster | None = None
    run: Run | None = None
    notes: list[str] = field(default_factory=list)

    def at(self, day: int, hms: str) -> dt.datetime:
        from core import clock

        return dt.datetime.combine(self.days[day], dt.time.fromisoformat(hms), clock.SEOUL)

    def edge(self, spec: str, default_day: int) -> dt.datetime:
        hms, _, plus = spec.partition("+")
        return self.at(int(plus) if plus else default_day, hms)


def _sym(code: str) -> str:
    return SYMBOLS[code]


def play(soak: Soak, seg: Segment) -> None:
    """Run one segment: its clock for the simulator and the processes (started in UTC), its
    script at its moments, until its end."""
    from core import clock

    start = soak.edge(seg.start, seg.day)
    end = soak.edge(seg.end, seg.day)
    cluster = soak.cluster
    if cluster.procs:
        # The simulator's day stands still while the last segment's processes stop.
        soak.run.control(
            "/_sim/clock", {"start": start.isoformat(), "origin": time.time(), "speed": 1e-6}
        )
        for name in sorted(
            cluster.procs, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else len(STOP_ORDER)
        ):
            cluster.stop_one(name)
    cluster.procs.clear()
    origin = time.time()
    shifted = clock.ShiftedClock(start.astimezone(dt.UTC), origin=origin, speed=seg.speed)
    cluster.clock_env = {
        "AEGIS_CLOCK_START": shifted.start.isoformat(),
        "AEGIS_CLOCK_ORIGIN": repr(origin),
        "AEGIS_CLOCK_SPEED": repr(float(seg.speed)),
    }
    soak.run.clock = shifted
    soak.run.control(
        "/_sim/clock", {"start": shifted.start.isoformat(), "origin": origin, "speed": seg.speed}
    )
    cluster.run_once("reconcile", "--startup", "--wait", "60")
    cluster.start_all(PROCESS_SET)
    pending = sorted(
        ((soak.at(d, hms), action, arg) for d, hms, action, arg in seg.script), key=lambda x: x[0]
    )
    logger.info("soak: %s from %s to %s at %gx", seg.name, start, end, seg.speed)
    with clock.installed(shifted):
        while clock.now() < end:
            while pending and pending[0][0] <= clock.now():
                when, action, arg = pending.pop(0)
                act(soak, action, arg, when)
            time.sleep(0.05)


def act(soak: Soak, action: str, arg: str, when: dt.datetime) -> None:
    code, _, value = arg.partition(":")
    symbol = _sym(code)
    if action == "price":
        soak.run.control("/_sim/prices", {"pdno": symbol, "price": int(value)})
    elif action == "working_sell":
        from execution import services
        from execution.models import Position

        position = Position.objects.get(symbol=symbol, status=Position.Status.OPEN)
        services.exit_intent_open(
            position_id=position.pk,
            qty=QTY // 2,
            limit_price=int(value),
            intent_type="MANUAL",
            idempotency_key=f"soak-working-{symbol}",
            reason="soak: a sell left working at the close",
        )
    soak.notes.append(f"{when:%Y-%m-%d %H:%M:%S} {action} {arg}")


# --- the verdict --------------------------------------------------------------------------------
_PREQUEUE = re.compile(r"exit\.gap_prequeue day=(\S+) thresholds=\d+ at=(\S+ \S+)")


def verdict(soak: Soak) -> dict:
    from core import clock
    from execution.models import Alert, Order, OrderIntent, Position, Reconciliation
    from market import calendar as market_calendar
    from trading.models import PositionExitState
    from trading.services import EXIT_PHASES, exit_phase

    from . import invariants

    sim = soak.run.control("/_sim/book", method="GET")
    violations: list[str] = []
    closes = [market_calendar.session(d).close for d in soak.days]
    opens = [market_calendar.session(d).open for d in soak.days]
    morning_auction = opens[1] - dt.timedelta(minutes=30)

    def sim_time(o: dict) -> dt.datetime:
        return dt.datetime.strptime(o["ord_dt"] + o["ord_tmd"], "%Y%m%d%H%M%S").replace(
            tzinfo=clock.SEOUL
        )

    def venue_moment(o: dict) -> market_calendar.Moment:
        return market_calendar.venue_moment(sim_time(o), market_calendar.Venue(o["routed"]))

    new_orders = [o for o in sim["orders"] if o["kind"] == "new"]
    per_phase = Counter(f"{o['routed']}:{venue_moment(o).phase}" for o in new_orders)
    untradable = [o for o in new_orders if not venue_moment(o).accepts(o["ord_dvsn"])]
    if untradable:
        violations.append(
            f"{len(untradable)} order(s) sent where their venue takes none: "
            f"{[(o['odno'], o['routed'], o['ord_tmd']) for o in untradable]}"
        )
    nxt_held = {_sym(code) for code in NXT_HELD}
    overnight = [
        o
        for o in new_orders
        if closes[0] <= sim_time(o) < morning_auction
        and (o["routed"] != "NXT" or o["pdno"] not in nxt_held)
    ]
    if overnight:
        violations.append(
            f"{len(overnight)} order(s) reached KIS between the close and the "
            f"next opening auction: {[o['odno'] for o in overnight]}"
        )
    refused = list(Order.objects.filter(reject_reason__contains="APBK09"))
    if refused:
        violations.append(
            f"{len(refused)} order(s) KIS refused for their phase: "
            f"{[o.reject_reason for o in refused]}"
        )
    nxt_positions = set(
        PositionExitState.objects.filter(profile__nxt_exits=True).values_list(
            "position_id", flat=True
        )
    )
    for intent in OrderIntent.objects.filter(side="SELL").exclude(intent_type="MANUAL"):
        deciding = exit_phase(intent.created_at)
        allowed = deciding is not None and deciding[1] == intent.venue
        if intent.venue == "NXT" and intent.position_id not in nxt_positions:
            allowed = False
        if not allowed:
            violations.append(
                f"{intent.intent_type} of {intent.symbol} to {intent.venue} decided at "
                f"{intent.created_at.astimezone(clock.SEOUL)} in {deciding}"
            )
    prequeues = []
    for log in sorted(soak.logs.glob("*/worker.log")) + [soak.logs / "worker.log"]:
        if log.exists():
            prequeues += _PREQUEUE.findall(log.read_text(errors="replace"))
    for index in soak.plan.prequeue_days:
        day = soak.days[index]
        sent = [
            dt.datetime.fromisoformat(at.replace(" ", "T"))
            for d, at in prequeues
            if d == f"{day:%Y-%m-%d}"
        ]
        window = (soak.at(index, "08:59:45"), soak.at(index, "08:59:59"))
        if not sent or not window[0] <= min(sent) <= window[1]:
            violations.append(
                f"the pre-queue of {day} was sent at {sent or 'no time'}, not "
                "between 08:59:45 and 08:59:59"
            )
    gaps = {}
    for intent in OrderIntent.objects.filter(intent_type="GAP_DOWN"):
        order = Order.objects.filter(intent=intent).exclude(submitted_at=None).first()
        lag = None if order is None else (order.submitted_at - intent.event_at).total_seconds()
        gaps[intent.symbol] = lag
        if lag is None or lag > 2.0:
            violations.append(f"GAP_DOWN of {intent.symbol} accepted {lag} s after its trade")
    for code in soak.plan.gaps:
        if _sym(code) not in gaps:
            violations.append(f"no GAP_DOWN exit for {_sym(code)} at its open")
    # Ended at the close: by KRX, which the sync saw first, or by the ledger's day end.
    working = Order.objects.filter(intent__idempotency_key=f"soak-working-{_sym('D')}").first()
    if (
        working is None
        or working.status != "CANCELLED"
        or not ("close" in working.reject_reason or "ended at KIS" in working.reject_reason)
    ):
        violations.append(
            f"the sell left working was not ended at the close: "
            f"{working and (working.status, working.reject_reason)}"
        )
    reserved = dict(
        Position.objects.filter(status="OPEN", symbol=_sym("D")).values_list(
            "symbol", "reserved_qty"
        )
    )
    if any(reserved.values()):
        violations.append(f"reservations left after the day's end: {reserved}")
    runs = list(
        Reconciliation.objects.filter(started_at__gte=closes[0], started_at__lt=opens[1]).order_by(
            "started_at"
        )
    )
    if not runs or runs[-1].result != Reconciliation.Result.MATCHED:
        violations.append(
            f"no clean reconciliation before the next open ({[r.result for r in runs]})"
        )
    for code in soak.plan.stops:
        why = "its stop, crossed outside the session"
        exits = OrderIntent.objects.filter(symbol=_sym(code), side="SELL")
        first = exits.order_by("created_at").first()
        if first is None:
            violations.append(f"{_sym(code)} ({why}) was never sold")
        elif market_calendar.moment(first.created_at).phase not in EXIT_PHASES:
            violations.append(f"{_sym(code)} sold in {market_calendar.moment(first.created_at)}")
    for code in soak.plan.nxt_stops:
        first = (
            OrderIntent.objects.filter(symbol=_sym(code), side="SELL")
            .order_by("created_at")
            .first()
        )
        deciding = first and exit_phase(first.created_at)
        order = first and Order.objects.filter(intent=first).first()
        if first is None or deciding is None or deciding[1] != "NXT" or first.venue != "NXT":
            violations.append(f"{_sym(code)} not sold on Nextrade in its session: {deciding}")
        elif order is None or order.status != "FILLED":
            violations.append(f"{_sym(code)}'s Nextrade exit not filled: {order and order.status}")
    snap = invariants.snapshot_take(sim, cano="50000001", taken_at=clock.now())
    violations += [f"invariant: {v}" for v in invariants.check(snap).violations]
    alerts = Counter(f"{a.kind}:{a.severity}" for a in Alert.objects.all())
    return {
        "violations": violations,
        "orders_per_phase": dict(per_phase),
        "orders": len(new_orders),
        "refused": len(refused),
        "alerts": dict(alerts),
        "gap_down_lag_s": gaps,
        "reconciliations_overnight": [r.result for r in runs],
        "script": soak.notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill.soak", description=__doc__)
    parser.add_argument("--out", default=str(SOAK_DIR))
    parser.add_argument("--logs", default=str(ROOT / "var" / "soak"))
    parser.add_argument(
        "--short",
        action="store_true",
        help="the close and the next open only (make test's short form)",
    )
    args = parser.parse_args(argv)
    services = services_start()
    started = time.monotonic()
    result: dict = {}
    soak = None
    try:
        _django(services)
        _database_template(services)
        _database_fresh(services)
        from core import clock

        first = trading_day(clock.now_seoul().date())
        second = trading_day(first + dt.timedelta(days=1))
        logs = Path(args.logs)
        shutil.rmtree(logs, ignore_errors=True)  # the verdict reads this run's logs only
        plan = PLANS["short" if args.short else "full"]
        soak = Soak(services=services, logs=logs, days=(first, second), plan=plan)
        symbols = list(SYMBOLS.values())
        origin = time.time()
        begin = soak.edge(plan.segments[0].start, plan.segments[0].day)
        cluster = Cluster(
            services,
            logs=logs,
            clock_start=begin.astimezone(dt.UTC),
            clock_origin=origin,
            symbols=dict.fromkeys(symbols, PRICE),
        )
        soak.cluster = cluster
        soak.run = Run(
            name="soak",
            cluster=cluster,
            services=services,
            clock=clock.ShiftedClock(begin, origin=origin),
            symbols=symbols,
            options=Options(),
        )
        cluster.simulator_start()
        soak.run.control("/_sim/day", {})
        seed(
            soak.run,
            [s for code, s in SYMBOLS.items() if code not in NXT_HELD],
            nxt_symbols=tuple(_sym(code) for code in NXT_HELD),
        )
        for seg in plan.segments:
            play(soak, seg)
        result = verdict(soak)
    except Exception as exc:  # noqa: BLE001 - reported as the verdict
        logger.exception("soak failed")
        result = {"violations": [f"soak error: {type(exc).__name__}: {exc}"]}
    finally:
        if soak is not None and soak.cluster is not None:
            soak.cluster.stop()
        services.stop_proxies()
        result["seconds"] = round(time.monotonic() - started, 1)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    ok = not result.get("violations")
    logger.info("soak: %s %s", "pass" if ok else "FAIL", json.dumps(result, default=str)[:3000])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
