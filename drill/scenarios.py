"""The drill's scenarios. Each sets a scene (positions held in the ledger and at the simulator),
causes exits by moving prices at the simulator, injects its faults, waits for the cluster to go
quiet (and stay quiet long enough for a late resend to show), then checks the invariants.

A scenario never decides its own verdict from timings: the checker (drill/invariants.py) does,
from what the ledger and the simulator hold at the end. Scenario-specific findings (an order
sent while HALTED) are added as violations.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from .cluster import (
    ACCOUNT_CANO,
    ACCOUNT_PRDT,
    CASH,
    HTS_ID,
    Cluster,
    FaketimeMissing,
    Services,
    execution_worker,
    faketime_available,
)

logger = logging.getLogger("drill")

PRICE = 19_000  # tick 10: a 3 % stop is 57 ticks away, out of the random walk's reach
GAP_PRICE = 17_480  # -8 %: under the 5 % gap-down threshold and the 3 % stop loss
QTY = 100


class Skipped(Exception):
    pass


@dataclass
class Options:
    settle_hold_s: float = 20.0  # quiet this long: a resend after a 13 s deadline shows
    settle_timeout_s: float = 150.0


@dataclass
class Run:
    """What a scenario has to work with."""

    name: str
    cluster: Cluster
    services: Services
    clock: object  # core.clock.ShiftedClock shared with the cluster
    symbols: list[str]
    options: Options
    violations: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    started: dt.datetime | None = None

    # --- the simulator ----------------------------------------------------------------------
    def control(self, path: str, payload: dict | None = None, method: str = "POST") -> dict:
        from kis_simulator.process import Control

        ctl = Control(self.cluster.base_url)
        try:
            return ctl.call(method, path, payload)
        finally:
            ctl.close()

    def book(self) -> dict:
        return self.control("/_sim/book?requests=0", method="GET")

    def faults(self, **faults) -> None:
        self.control("/_sim/faults", faults)

    def faults_clear(self) -> None:
        self.control("/_sim/faults", method="DELETE")

    def drop(self, symbols: list[str], price: int = GAP_PRICE) -> None:
        """Each symbol trades at `price`: its exit fires (expected to be sent)."""
        for symbol in symbols:
            self.control("/_sim/prices", {"pdno": symbol, "price": price})
        self.expected += [s for s in symbols if s not in self.expected]

    def hold(self, symbols: list[str]) -> None:
        """The simulator's account: QTY shares of each of `symbols` at PRICE, nothing else."""
        self.control(
            "/_sim/accounts",
            {
                "cano": ACCOUNT_CANO,
                "acnt_prdt_cd": ACCOUNT_PRDT,
                "cash": CASH,
                "hts_id": HTS_ID,
                "holdings": [{"pdno": s, "qty": QTY, "avg_price": PRICE} for s in symbols],
            },
        )

    def sim_orders(self) -> list[dict]:
        return [o for o in self.book()["orders"] if o["kind"] == "new"]

    # --- waiting ----------------------------------------------------------------------------
    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.25)
        logger.warning("drill %s: %s did not happen within %.0f s", self.name, what, timeout)
        return False

    def settle(
        self, *, quiet: Callable[[], bool] | None = None, timeout_s: float | None = None
    ) -> None:
        """Until nothing is on its way (no open order, no NEW intent) and the simulator's order
        count stays the same for settle_hold_s; at most settle_timeout_s (or `timeout_s`)."""
        from execution.models import Order, OrderIntent

        def calm() -> bool:
            if quiet is not None:
                return quiet()
            return not (
                Order.objects.filter(status__in=Order.OPEN_STATUSES).exists()
                or OrderIntent.objects.filter(status="NEW").exists()
            )

        timeout_s = timeout_s or self.options.settle_timeout_s
        deadline = time.monotonic() + timeout_s
        since, seen = None, None
        while time.monotonic() < deadline:
            count = len(self.sim_orders())
            if calm() and count == seen:
                since = since or time.monotonic()
                if time.monotonic() - since >= self.options.settle_hold_s:
                    return
            else:
                since = None
            seen = count
            time.sleep(0.5)
        logger.warning("drill %s: not quiet within %.0f s", self.name, timeout_s)

    def set_state(self, state: str) -> None:
        from execution.services import trading_state_set

        trading_state_set(state=state, reason=f"drill {self.name}", changed_by="drill")


# --- the scene --------------------------------------------------------------------------------
def seed(run: Run, symbols: list[str], nxt_symbols: tuple[str, ...] = ()) -> None:
    """Positions of QTY shares at PRICE in the ledger, the same holdings at the simulator, one
    exit profile (3 % stop loss, 5 % gap down; `nxt_symbols` under the same rules with
    Nextrade exits allowed), trading ACTIVE."""
    from core import clock
    from execution.models import Position, TradingState
    from trading.models import ExitProfile, PositionExitState

    with clock.installed(run.clock):
        opened = clock.now() - dt.timedelta(days=3)
        rules = {"stop_loss_pct": Decimal(3), "gap_down_pct": Decimal(5), "max_holding_days": 60}
        profile = ExitProfile.objects.create(name="drill", **rules)
        nxt = ExitProfile.objects.create(name="drill-nxt", nxt_exits=True, **rules)
        positions = Position.objects.bulk_create(
            Position(symbol=s, qty=QTY, avg_price=Decimal(PRICE), opened_at=opened)
            for s in [*symbols, *nxt_symbols]
        )
        PositionExitState.objects.bulk_create(
            PositionExitState(
                position=p, profile=nxt if p.symbol in nxt_symbols else profile, peak_qty=QTY
            )
            for p in positions
        )
        TradingState.objects.filter(pk=TradingState.SINGLETON_PK).update(state="ACTIVE")
    run.hold([*symbols, *nxt_symbols])


@dataclass(frozen=True)
class Scenario:
    name: str
    body: Callable[[Run], None]
    positions: int = 10
    flavour: str = "real"
    at: str = "10:00:00"  # Seoul time the cluster's clock reads when it starts
    lead_s: float = 0.0  # the clock reads `at` this long after the cluster starts
    skews: dict = field(default_factory=dict)  # process → faketime offset
    env: dict = field(default_factory=dict)  # more environment for every process
    processes: tuple[str, ...] | None = None
    description: str = ""


# --- the scenarios' bodies --------------------------------------------------------------------
def open_bell(run: Run) -> None:
    """Every position gaps down 8 % at 09:00:00: all exits decided at one instant."""
    open_at = run.clock.start
    while run.clock.now() < open_at + dt.timedelta(milliseconds=200):
        time.sleep(0.05)
    run.drop(run.symbols)
    # Every send and every fill's inquiry shares the key's rate: on a paper key (2 calls/s) the
    # sends alone take n ÷ 2 s, and the fills' catch-up as long again.
    paper = run.cluster.flavour == "paper"
    run.settle(timeout_s=run.options.settle_timeout_s + (2 * len(run.symbols) if paper else 0))


def redis_late(run: Run) -> None:
    """Redis answers 0.6 s late (past the doorbell's 0.5 s push timeout) while exits fire."""
    run.services.proxies["redis"].latency(0.6)
    try:
        run.drop(run.symbols)
        time.sleep(15)
    finally:
        run.services.proxies["redis"].latency(0)
    run.settle()


def send_slower_than_grace(run: Run) -> None:
    """The client's rate (1 call/s, scenario env) makes the last of 25 sends wait ~25 s for its
    slot: well past the 10 s grace a send had before its claim moved to the write."""
    run.drop(run.symbols)
    run.settle()


def payloads_left_across_worker_stop(run: Run) -> None:
    """Exits fire and the execution worker is stopped (SIGTERM) a moment later, leaving what was
    queued for it; it starts again 20 s later."""
    run.drop(run.symbols)
    time.sleep(0.3)
    run.cluster.stop_one("execution")
    time.sleep(20)
    run.cluster.restart("execution")
    run.settle()


def kill9_after_booking(run: Run) -> None:
    """The first order is booked at KIS but its answer is held; the senders (pricesync, which
    sends exits in-process, and the execution worker) are killed -9 and started again."""
    run.faults(timeout_next=1, after=True, timeout_s=60, path="order-cash")
    run.drop(run.symbols[:1])
    run.wait_for("the order booked", lambda: len(run.sim_orders()) >= 1, 30)
    time.sleep(0.5)
    run.cluster.kill9("pricesync")
    run.cluster.kill9("execution")
    run.cluster.restart("execution")
    run.cluster.restart("pricesync")
    run.drop(run.symbols[1:3])
    run.settle()


def clock_skew(run: Run) -> None:
    """Senders on a host whose clock is off (faketime): the first two orders are booked but
    their answers never come (a read timeout: unknown outcome), so they are settled against
    KIS's daily orders by the skewed host."""
    run.faults(timeout_next=2, after=True, timeout_s=40, path="order-cash")
    run.drop(run.symbols[:5])
    run.settle()


def kis_5xx_body(run: Run) -> None:
    """Two orders are booked, then answered HTTP 500 with a KIS body and a code the client does
    not know: an unknown outcome, not a refusal."""
    run.faults(
        error_5xx_next=2,
        after=True,
        error_status=500,
        error_msg_cd="EGW00999",
        error_msg1="시스템 처리 중 오류가 발생하였습니다.",
        path="order-cash",
    )
    run.drop(run.symbols[:5])
    time.sleep(20)
    run.faults_clear()
    run.settle()


def missing_rmn_qty(run: Run) -> None:
    """The daily-orders inquiry answers without rmn_qty (30 answers), while exits fill."""
    run.faults(omit_next=30, omit_field="rmn_qty", path="inquire-daily-ccld")
    run.drop(run.symbols[:5])
    time.sleep(25)
    run.faults_clear()
    run.settle()


def missing_hldg_qty(run: Run) -> None:
    """The balance inquiry answers without hldg_qty while a reconciliation runs, then exits
    fire."""
    run.faults(omit_next=20, omit_field="hldg_qty", path="inquire-balance")
    try:
        run.cluster.run_once("reconcile", timeout=60)
    except Exception as exc:  # noqa: BLE001 - a refused answer may fail the command: fine
        logger.info("drill missing_hldg_qty: reconcile: %s", str(exc)[-300:])
    run.drop(run.symbols[:5])
    time.sleep(10)
    run.faults_clear()
    run.settle()


def halted_during_unknown_outcome(run: Run) -> None:
    """An exit's order is sent and its request held, never to take effect at KIS (an unknown
    outcome: the sender's read times out); trading is set HALTED meanwhile. Nothing may reach
    KIS from then on: neither a resend of that order once it is settled as not arrived, nor new
    exits."""
    run.faults(timeout_next=1, timeout_s=15, path="order-cash")
    first = run.symbols[0]
    run.control("/_sim/prices", {"pdno": first, "price": GAP_PRICE})

    def held() -> bool:
        book = run.control("/_sim/book", method="GET")
        return any(r["fault"] == "timeout" for r in book["requests"])

    run.wait_for("the order's request held", held, 30)
    run.set_state("HALTED")
    halted_with = len(run.sim_orders())
    for symbol in run.symbols[1:4]:
        run.control("/_sim/prices", {"pdno": symbol, "price": GAP_PRICE})
    time.sleep(40)  # past the held request, the grace and a few sweeps
    run.settle(quiet=lambda: True)
    after = run.sim_orders()
    if len(after) > halted_with:
        run.violations.append(
            f"{len(after) - halted_with} order(s) reached KIS while HALTED: "
            + ", ".join(f"{o['pdno']} odno {o['odno']}" for o in after[halted_with:])
        )


def exit_refused_by_kis(run: Run) -> None:
    """Two of five holdings were sold outside Aegis (KIS's app): KIS refuses their stops' sells.
    Each refusal must pause its position's exits, with an alert, instead of the engine deciding
    the stop again at each trade and each pass; the other three sell. While prices keep falling,
    nothing more may reach KIS. Then the shares are back at KIS, a person resumes the two, and
    their stops sell."""
    from core import clock
    from execution.models import Alert, Order
    from trading.models import PositionExitState
    from trading.services import exit_pause

    held, sold = run.symbols[:3], run.symbols[3:]
    run.hold(held)

    def sends() -> int:
        book = run.control("/_sim/book", method="GET")
        return sum(1 for r in book["requests"] if r["path"].endswith("/order-cash"))

    def paused() -> set[str]:
        return set(
            PositionExitState.objects.filter(
                position__symbol__in=sold, paused_at__isnull=False
            ).values_list("position__symbol", flat=True)
        )

    run.drop(run.symbols)
    run.wait_for("both refusals to pause their positions", lambda: paused() == set(sold), 60)
    run.settle()  # the three held sell and fill
    refused_sends = sends() - len(run.sim_orders())
    for k in range(1, 11):  # ten more trades below the stop, a second apart, and the passes
        for symbol in sold:
            run.control("/_sim/prices", {"pdno": symbol, "price": GAP_PRICE - 10 * k})
        time.sleep(1)
    extra = sends() - len(run.sim_orders()) - refused_sends
    if refused_sends != len(sold) or extra:
        run.violations.append(
            f"{refused_sends} refused sell(s) for {len(sold)} refused stop(s), then {extra} "
            "more sent while their positions were paused"
        )
    if paused() != set(sold):
        run.violations.append(f"paused after the refusals: {sorted(paused())}, not {sold}")
    alerts = Alert.objects.filter(kind="EXIT", state="paused", subject__in=sold).count()
    if alerts != len(sold):
        run.violations.append(f"{alerts} EXIT alert(s) for {len(sold)} refused stops")
    if Order.objects.filter(position__symbol__in=sold, status="REJECTED").count() != len(sold):
        run.violations.append("not one rejected order per refused stop in the ledger")
    # The shares are back at KIS; a person resumes the two positions; their stops sell.
    run.hold(sold)
    with clock.installed(run.clock):
        for state in PositionExitState.objects.filter(position__symbol__in=sold):
            exit_pause(position_id=state.position_id, paused=False, by="drill")
    run.drop(sold, price=GAP_PRICE - 200)
    run.settle()


def two_execution_workers(run: Run) -> None:
    """Two execution workers, as two hosts would run them; 30 exits at once."""
    run.cluster.start("execution-b", spec=execution_worker("drill-b"))
    run.drop(run.symbols)
    run.settle()


def database_stall(run: Run) -> None:
    """PostgreSQL's connections (pooled and direct) stall for 4 s just after exits fire."""
    run.drop(run.symbols)
    time.sleep(0.2)
    for name in ("pg", "pgpool"):
        run.services.proxies[name].stall()
    time.sleep(4)
    for name in ("pg", "pgpool"):
        run.services.proxies[name].resume()
    run.settle()


def connections_reset(run: Run) -> None:
    """Every Redis and PostgreSQL connection is reset just after exits fire, and again 1 s
    later."""
    run.drop(run.symbols)
    for _ in range(2):
        time.sleep(0.3 if _ == 0 else 1.0)
        for name in ("redis", "pg", "pgpool"):
            run.services.proxies[name].reset()
    run.settle()


# The processes that send: pricesync sends the exits it opens in-process
# (execution/sender.py), the execution worker the rest, and settles: one "host".
SKEW_HOST = ("execution", "pricesync")


def _skewed(offset: str) -> dict:
    return {name: offset for name in SKEW_HOST}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "open_bell_burst_real",
            open_bell,
            positions=100,
            at="09:00:00",
            lead_s=45,
            description="100 positions gap down at 09:00:00, a 20/s key",
        ),
        Scenario(
            "open_bell_burst_paper",
            open_bell,
            positions=100,
            flavour="paper",
            at="09:00:00",
            lead_s=120,
            description="100 positions gap down at 09:00:00, a 2/s paper key",
        ),
        Scenario(
            "redis_late",
            redis_late,
            positions=20,
            description="Redis 0.6 s late (proxy) while 20 exits fire",
        ),
        Scenario(
            "send_slower_than_grace",
            send_slower_than_grace,
            positions=25,
            env={"KIS_RATE_PER_SECOND": "1"},
            description="25 exits through a 1 call/s client: sends wait past the grace",
        ),
        Scenario(
            "payloads_left_across_worker_stop",
            payloads_left_across_worker_stop,
            positions=20,
            description="the execution worker stopped 0.3 s after 20 exits",
        ),
        Scenario(
            "kill9_after_booking",
            kill9_after_booking,
            positions=3,
            description="KIS booked the order, its answer held, the senders killed -9",
        ),
        Scenario(
            "clock_skew_plus_3s",
            clock_skew,
            positions=5,
            skews={"execution": "+3s"},
            description="the execution worker 3 s ahead, two answers lost",
        ),
        Scenario(
            "clock_skew_minus_3s",
            clock_skew,
            positions=5,
            skews={"execution": "-3s"},
            description="the execution worker 3 s behind, two answers lost",
        ),
        Scenario(
            "clock_skew_plus_30s",
            clock_skew,
            positions=5,
            skews={"execution": "+30s"},
            description="the execution worker 30 s ahead, two answers lost",
        ),
        Scenario(
            "clock_skew_minus_30s",
            clock_skew,
            positions=5,
            skews={"execution": "-30s"},
            description="the execution worker 30 s behind, two answers lost",
        ),
        Scenario(
            "clock_skew_host_plus_3s",
            clock_skew,
            positions=5,
            skews=_skewed("+3s"),
            description="the sending host (pricesync and the execution worker) 3 s ahead, "
            "two answers lost",
        ),
        Scenario(
            "kis_5xx_body",
            kis_5xx_body,
            positions=5,
            description="two orders booked, then HTTP 500 with a KIS body, unknown code",
        ),
        Scenario(
            "missing_rmn_qty",
            missing_rmn_qty,
            positions=5,
            description="daily orders without rmn_qty while 5 exits fill",
        ),
        Scenario(
            "missing_hldg_qty",
            missing_hldg_qty,
            positions=5,
            description="balance without hldg_qty during a reconciliation, then 5 exits",
        ),
        Scenario(
            "halted_during_unknown_outcome",
            halted_during_unknown_outcome,
            positions=4,
            description="HALTED while an order's outcome is unknown",
        ),
        Scenario(
            "exit_refused_by_kis",
            exit_refused_by_kis,
            positions=5,
            description="two holdings sold outside Aegis: their stops refused by KIS, paused",
        ),
        Scenario(
            "two_execution_workers",
            two_execution_workers,
            positions=30,
            description="two execution workers (two hosts), 30 exits",
        ),
        Scenario(
            "database_stall",
            database_stall,
            positions=20,
            description="PostgreSQL stalled 4 s (proxy) just after 20 exits",
        ),
        Scenario(
            "connections_reset",
            connections_reset,
            positions=20,
            description="every Redis and PostgreSQL connection reset twice during 20 exits",
        ),
    )
}
QUICK = ("kill9_after_booking", "two_execution_workers")


def requires_faketime(scenario: Scenario) -> None:
    if scenario.skews and not faketime_available():
        raise Skipped(
            "faketime is not installed (apt-get install faketime, as root) and the "
            "drill is not root: clock skew scenarios skipped"
        )


__all__ = [
    "SCENARIOS",
    "QUICK",
    "Scenario",
    "Run",
    "Options",
    "Skipped",
    "seed",
    "requires_faketime",
    "FaketimeMissing",
]
