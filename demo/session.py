"""`make demo`: one simulated trading day on the embedded default (PostgreSQL, tasks in-process),
against the KIS simulator as a real server on loopback.

Everything that runs in production runs here, in one process: price sync on the simulator's
WebSocket (each trade evaluated at once), fill notices, the web app serving the picks API over
real HTTP, and a beat loop driving the market cadence (200 ms / 500 ms / 2 s), the GAP_DOWN
pre-queue at 08:59:50 and the sweeps. The day (demo/scenario.py) is played on a ShiftedClock
that the simulator shares, `speed` simulated seconds per real second; the price of each stock
is printed by the simulator when the script says.

Latencies are measured on the simulated clock and divided by the speed: the clock is linear,
so they are real milliseconds of this machine, for the embedded default (PostgreSQL, in-process
tasks), not the deployed stack; `make bench` measures that.
"""

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connection, connections
from django.test.utils import override_settings

from core import clock
from core.logs import ZonedFormatter
from execution import fills_stream, services
from execution.broker import get_broker
from execution.exceptions import InsufficientAvailableQty
from execution.models import Alert, Fill, IntentType, Order, OrderIntent, Position, TradingState
from execution.services.reconciliation import reconciliation_run
from kis_simulator.process import Control, simulator_start, simulator_stop
from market import calendar as market_calendar
from market.models import Symbol
from picks.models import GateSettings, Pick, PositionOpener
from picks.services import source_upsert
from trading.beat import windows_from_db
from trading.cadence import CadenceDriver, PrequeueDriver
from trading.models import ExitProfile, PositionExitState, TakeProfitTier
from trading.pricesync import PriceSync

from . import report, scenario

logger = logging.getLogger("aegis.demo")

ACCOUNT = "50000001-01"
HTS_ID = "demo-hts"
CASH = 300_000_000
# The beat's other entries, every so many simulated seconds (as the beat schedule has them).
PERIODIC_S = {
    "execution.sweep": 5,
    "execution.orders_sync": 5,
    "execution.orders_expire": 5,
    "trading.exit_orders_expire": 5,
    "trading.day_end": 10,
    "execution.reconcile": 60,
    "picks.sweep": 60,
}
SETTLE_LIMIT_S = 180  # simulated seconds a segment may run over its end for the exits to settle


def demo_day(today: dt.date) -> dt.date:
    """The first regular KRX session on or after `today` (no late open)."""
    day = today
    while True:
        session = market_calendar.session(day)
        if session is not None and not session.late_open:
            return day
        day += dt.timedelta(days=1)


def trading_days_before(day: dt.date, n: int) -> dt.date:
    while n > 0:
        day -= dt.timedelta(days=1)
        if market_calendar.is_trading_day(day):
            n -= 1
    return day


@contextlib.contextmanager
def logs_to(path: Path):
    """Every log record to `path` instead of the console, which the progress display owns."""
    root = logging.getLogger()
    moved = [
        (lg, h)
        for lg in [root, *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
        for h in list(getattr(lg, "handlers", []))
        if type(h) is logging.StreamHandler
    ]
    handler = logging.FileHandler(path)
    handler.setFormatter(ZonedFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for lg, h in moved:
        lg.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for lg, h in moved:
            lg.addHandler(h)


class DemoPriceSync(PriceSync):
    """Price sync as deployed, noting when each trade reached it (for tick → order)."""

    def __init__(self, *args, arrivals: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals = arrivals
        self.trades = 0
        self.handled_ms: list[float] = []  # each trade written and its positions evaluated

    async def _on_trade(self, tick) -> None:
        self.trades += 1
        self.arrivals[tick.symbol].append((clock.now(), tick.price))
        started = time.perf_counter()
        await super()._on_trade(tick)
        self.handled_ms.append((time.perf_counter() - started) * 1000)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Seen(TypedDict):
    """The ids of the rows already reported, by kind."""

    intents: set[uuid.UUID]
    fills: set[int]
    alerts: set[int]
    picks: set[int]


class Session:
    def __init__(
        self,
        *,
        speed: float,
        out: Path,
        seed: int = 7,
        live: bool = True,
        short: bool = False,
        stream=sys.stdout,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed, self.out, self.seed, self.live, self.stream = speed, out, seed, live, stream
        self.segments = scenario.SHORT_SEGMENTS if short else scenario.SEGMENTS
        self.day = demo_day(clock.now_seoul().date())
        self.clock = clock.ShiftedClock(self.at(self.segments[0][0]), speed=speed)
        self.arrivals: dict[str, list] = defaultdict(list)
        self.printed: dict[str, list] = defaultdict(list)  # symbol → [(at, price)]
        self.http_answers: list[dict] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.passes = 0
        self.pass_ms: list[float] = []  # each exit pass of the market cadence, real ms
        self.cadence = CadenceDriver(
            send=self.exit_pass,
            windows=windows_from_db,
            default_ms=settings.TRADING_EXIT_DEFAULT_INTERVAL_MS,
        )
        self.outage: list[dt.datetime] = []  # when KIS began answering 503, and when it stopped
        self.prequeued: int | None = None
        self.seen: Seen = {"intents": set(), "fills": set(), "alerts": set(), "picks": set()}
        self.status_width = 0
        self.jumps: list[tuple[dt.datetime, dt.timedelta]] = []  # (landed at, time skipped)
        self.ingest_url = self.token = ""

    # --- helpers ----------------------------------------------------------------------------
    def at(self, hms: str) -> dt.datetime:
        return scenario.at(self.day, hms, clock.SEOUL)

    def say(self, text: str, *, when: dt.datetime | None = None) -> None:
        if when is None:
            when = clock.now_seoul()
        line = f"{when.astimezone(clock.SEOUL):%H:%M:%S}  {text}"
        if self.live:
            self.stream.write("\r" + " " * self.status_width + "\r" + line + "\n")
            self.stream.flush()
            self.status_width = 0

    def status(self, text: str) -> None:
        if self.live and self.stream.isatty():
            self.stream.write("\r" + text.ljust(self.status_width))
            self.stream.flush()
            self.status_width = len(text)

    # --- the run ----------------------------------------------------------------------------
    def run(self) -> dict:
        call_command("migrate", verbosity=0)
        qkey, qsecret = secrets.token_hex(18), secrets.token_hex(90)
        okey, osecret = secrets.token_hex(18), secrets.token_hex(90)
        sim, base_url, ws_url = simulator_start(
            "--flavour",
            "real",
            "--rps",
            "0",
            "--tick-ms",
            "0",
            "--seed",
            str(self.seed),
            "--app",
            f"{qkey}:{qsecret}",
            "--app",
            f"{okey}:{osecret}",
            "--account",
            f"{ACCOUNT}:{CASH}:{HTS_ID}",
        )
        kis = dict(
            settings.KIS,
            ENV="simulator",
            FLAVOUR="real",
            BASE_URL=base_url,
            WS_URL=ws_url,
            ACCOUNT=ACCOUNT,
            HTS_ID=HTS_ID,
            QUERY_APP_KEY=qkey,
            QUERY_APP_SECRET=qsecret,
            ORDER_APP_KEY=okey,
            ORDER_APP_SECRET=osecret,
            # The outage meets the two exits sent in it (their settles wait a send window on
            # the database's clock, past the outage): the second failure opens the circuit.
            BREAKER_FAIL_MAX=2,
            BREAKER_RESET_S=1.0,
        )
        control = Control(base_url)
        get_broker.cache_clear()
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            with (
                override_settings(KIS=kis),
                clock.installed(self.clock),
                logs_to(self.out / "demo.log"),
            ):
                token = self.prepare(control)
                return self.trade(control, token)
        finally:
            get_broker.cache_clear()
            control.close()
            simulator_stop(sim)

    def prepare(self, control: Control) -> str:
        """The scene before 08:58:30: the simulator's stocks and account, yesterday's positions
        in the ledger, exit profiles, the picks source. Returns the source's token."""
        control.post("/_sim/limits", {"vi": True})  # KRX's volatility interruptions
        for stock in scenario.STOCKS:
            control.post(
                "/_sim/prices",
                {
                    "pdno": stock.code,
                    "price": stock.prev_close,
                    "prev_close": stock.prev_close,
                    "name": stock.name,
                },
            )
        control.post(
            "/_sim/accounts",
            {
                "cano": ACCOUNT[:8],
                "acnt_prdt_cd": ACCOUNT[-2:],
                "cash": CASH,
                "hts_id": HTS_ID,
                "holdings": [
                    {"pdno": s.code, "qty": s.held.qty, "avg_price": s.held.avg_price}
                    for s in scenario.STOCKS
                    if s.held
                ],
            },
        )
        Symbol.objects.bulk_create(
            [Symbol(code=s.code, name=s.name, market=Symbol.Market.KOSPI) for s in scenario.STOCKS],
            update_conflicts=True,
            unique_fields=["code"],
            update_fields=["name"],
        )
        profiles = {}
        for name, spec in scenario.PROFILES.items():
            profiles[name], _ = ExitProfile.objects.update_or_create(
                name=name, defaults=spec["fields"]
            )
            for gain, sell in spec["tiers"]:
                TakeProfitTier.objects.update_or_create(
                    profile=profiles[name], gain_pct=gain, defaults={"sell_pct": sell}
                )
        # Earlier days' entries, through the ledger, with the broker's order numbers of then.
        with override_settings(EXECUTION_AUTO_SUBMIT=False):
            held = [(s, s.held) for s in scenario.STOCKS if s.held is not None]
            for n, (stock, holding) in enumerate(held):
                bought = trading_days_before(self.day, holding.days_ago)
                with clock.installed(
                    clock.FixedClock(scenario.at(bought, "10:00:00", clock.SEOUL))
                ):
                    intent = services.entry_intent_open(
                        symbol=stock.code,
                        qty=holding.qty,
                        limit_price=holding.avg_price,
                        idempotency_key=f"{report.EARLIER_INTENT}{stock.code}",
                        reason="an earlier day",
                    )
                    order = services.order_open(intent_id=intent.pk)
                    if order is None:
                        raise RuntimeError(f"the ledger refused {stock.code}'s earlier entry")
                    services.order_mark_submitted(
                        order_id=order.pk, broker_order_no=f"{bought:%m%d}{n:06d}"
                    )
                    services.fill_apply(
                        order_id=order.pk,
                        broker_fill_key=f"{report.EARLIER_FILL}{order.pk}",
                        qty=holding.qty,
                        price=holding.avg_price,
                    )
                PositionExitState.objects.create(
                    position_id=intent.position_id,
                    profile=profiles[holding.profile],
                    peak_qty=holding.qty,
                )
        # The system ran yesterday: its day end is on record, so today's closes the gate.
        TradingState.objects.update_or_create(
            pk=TradingState.SINGLETON_PK,
            defaults={"day_ended_for": trading_days_before(self.day, 1)},
        )
        # Ages are simulated seconds: at 30x a machine that stalls for a second has let 30 go
        # by, so the freshness limits grow with the speed (the defaults at the real pace).
        gate = GateSettings.current()
        gate.max_price_age_s = int(10 + 2 * self.speed)
        gate.max_pick_age_s = int(30 + 2 * self.speed)
        gate.save()
        # The day's picks come seconds apart at 20x and more: a rate above the default's.
        source, _, token = source_upsert(
            code=scenario.SOURCE,
            name=scenario.SOURCE_NAME,
            exit_profile=profiles[scenario.SOURCE_PROFILE],
            rate_limit="100/second",
            rotate=True,
        )
        assert token is not None  # rotate: a new token is issued
        # The earlier days' positions were opened by the strategy's picks: its SELL picks
        # may sell them (a source sells only what it opened, picks/routing.py).
        for position in Position.objects.filter(status=Position.Status.OPEN):
            PositionOpener.objects.get_or_create(
                position=position, defaults={"source": source, "opened_at": position.opened_at}
            )
        return token

    def trade(self, control: Control, token: str) -> dict:
        origin = time.time()
        self.clock.rebase(self.at(self.segments[0][0]), origin=origin)
        control.post(
            "/_sim/clock",
            {"start": self.clock.start.isoformat(), "origin": origin, "speed": self.speed},
        )
        self.say(
            f"Aegis demo · {self.day:%A %d %B %Y}, KRX regular session · "
            f"{self.speed:g}× real time · PostgreSQL, tasks in-process · KIS simulator at "
            f"{settings.KIS['BASE_URL']}"
        )
        broker = get_broker()
        run = reconciliation_run(broker=broker, trigger="STARTUP")
        self.say(
            f"startup reconciliation with KIS's holdings: {run.result.lower()}, "
            f"{run.symbols_checked} symbols, {run.mismatches.count()} mismatches"
        )
        services.trading_state_set(state="ACTIVE", reason="demo session", changed_by="demo")

        httpd = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
        httpd.set_app(WSGIHandler())  # not get_wsgi_application(): it sets logging up again
        threads = [threading.Thread(target=httpd.serve_forever, name="web", daemon=True)]
        self.ingest_url = f"http://127.0.0.1:{httpd.server_address[1]}/api/picks/ingest"
        self.token = token
        streams = Streams(
            broker=broker,
            arrivals=self.arrivals,
            watchlist=tuple(s.code for s in scenario.STOCKS if not s.held),
        )
        threads += [
            threading.Thread(target=streams.main, name="streams", daemon=True),
            threading.Thread(target=self.beat, name="beat", daemon=True),
        ]
        for thread in threads:
            thread.start()
        if not streams.ready.wait(30):
            raise RuntimeError(f"price sync did not start: {streams.error}")
        self.say(
            f"price sync on the simulator's WebSocket, following "
            f"{len(streams.sync.symbols)} symbols; fill notices subscribed; picks API at "
            f"{self.ingest_url}"
        )
        events = ThreadPoolExecutor(max_workers=2, thread_name_prefix="event")
        try:
            for n, (start, end) in enumerate(self.segments):
                if n:
                    origin = time.time()
                    before = self.clock.now()
                    self.clock.rebase(self.at(start), origin=origin)
                    self.jumps.append((self.clock.start, self.clock.start - before))
                    control.post(
                        "/_sim/clock",
                        {
                            "start": self.clock.start.isoformat(),
                            "origin": origin,
                            "speed": self.speed,
                        },
                    )
                    self.say(f"— {scenario.SKIP_NOTE}: on to {start} —")
                self.play(control, start, end, events)
        finally:
            self.stop.set()
            events.shutdown(wait=True)
            streams.close()
            httpd.shutdown()
            httpd.server_close()
            for thread in threads:
                thread.join(timeout=30)
            self.poll()
        book = control.call("GET", "/_sim/book?requests=0")
        result = report.build(
            session=self,
            book=book,
            trades_seen=streams.sync.trades,
            trade_handled_ms=streams.sync.handled_ms,
        )
        report.write(result, session=self, out=self.out)
        connections.close_all()
        return result

    # --- the price script and the events --------------------------------------------------
    def play(self, control: Control, start: str, end: str, events: ThreadPoolExecutor) -> None:
        first, last = scenario.second_of_day(start), scenario.second_of_day(end)
        due = {s.code: first for s in scenario.STOCKS}
        pending = [e for e in scenario.EVENTS if first <= scenario.second_of_day(e.at) < last]
        futures = []
        next_poll = 0.0
        calm_since = None  # (real, simulated second) when everything was last found settled
        while True:
            now = clock.now_seoul()
            second = now.hour * 3600 + now.minute * 60 + now.second
            if second >= last:
                # Over: once nothing is in flight, and stays so long enough for an exit that
                # a cancel released to fire again.
                if not self.settled():
                    calm_since = None
                elif calm_since is None:
                    calm_since = (time.monotonic(), second)
                elif time.monotonic() - calm_since[0] >= 0.5 and second - calm_since[1] >= 5:
                    break
                if second >= last + SETTLE_LIMIT_S:
                    break
            while pending and scenario.second_of_day(pending[0].at) <= second:
                event = pending.pop(0)
                futures.append(events.submit(self.event, event))
            for stock in scenario.STOCKS:
                if due[stock.code] <= second:
                    price = scenario.price_at(stock, min(second, last), seed=self.seed)
                    if price is not None and second >= scenario.second_of_day("09:00:00"):
                        control.post("/_sim/prices", {"pdno": stock.code, "price": price})
                        self.printed[stock.code].append((clock.now(), price))
                    due[stock.code] = second + scenario.trade_every(second)
            if time.monotonic() >= next_poll:
                self.poll()
                next_poll = time.monotonic() + 0.25
            wait = (min(due.values()) - second) / self.speed
            time.sleep(min(max(wait, 0.005), 0.05))
        for future in futures:
            future.result()

    def settled(self) -> bool:
        return not (
            OrderIntent.objects.filter(status=OrderIntent.Status.NEW).exists()
            or Order.objects.filter(status__in=Order.OPEN_STATUSES).exists()
        )

    def event(self, event: scenario.Event) -> None:
        try:
            getattr(self, f"on_{event.action}")(event)
        except Exception as exc:  # noqa: BLE001 - reported, and the day goes on
            self.errors.append(f"{event.action}: {type(exc).__name__}: {exc}")
            self.say(f"event {event.action} failed: {type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def post_picks(self, picks) -> tuple[int, dict]:
        now = clock.now()
        body = json.dumps([p.body(now) for p in picks]).encode()
        request = urllib.request.Request(
            self.ingest_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, json.loads(exc.read() or b"{}")
        self.http_answers.append({"status": status, "picks": [p.external_id for p in picks]})
        return status, answer

    def on_picks(self, event: scenario.Event) -> None:
        status, answer = self.post_picks(event.picks)
        self.say(
            f"POST /api/picks/ingest, {len(event.picks)} pick(s) ({event.note}): {status} "
            f"{answer.get('status', '')} ids {answer.get('ids')}"
        )

    def on_bad_picks(self, event: scenario.Event) -> None:
        status, answer = self.post_picks(event.picks)
        self.say(f"POST /api/picks/ingest ({event.note}): {status} {answer.get('errors')}")

    def on_race_picks(self, event: scenario.Event) -> None:
        barrier = threading.Barrier(len(event.picks))
        answers = []

        def send(pick):
            try:
                barrier.wait()
                answers.append(self.post_picks([pick])[0])
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=(p,)) for p in event.picks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.say(f"{event.note}: answered {sorted(answers)}")

    def on_outage_start(self, event: scenario.Event) -> None:
        with contextlib.closing(Control(settings.KIS["BASE_URL"])) as control:
            control.post("/_sim/faults", {"error_5xx_rate": 1.0, "error_status": 503})
        self.outage.append(clock.now())
        self.say(f"FAULT: {event.note}")

    def on_outage_end(self, event: scenario.Event) -> None:
        with contextlib.closing(Control(settings.KIS["BASE_URL"])) as control:
            control.call("DELETE", "/_sim/faults")
        self.outage.append(clock.now())
        self.say(f"FAULT over: {event.note}")

    def on_close(self, event: scenario.Event) -> None:
        with contextlib.closing(Control(settings.KIS["BASE_URL"])) as control:
            control.post("/_sim/session", {"open": False})
        self.say(
            "the close: KRX takes no more regular orders (15:30); the day's orders end in the "
            "ledger, which reconciles with KIS at once"
        )

    def on_after_market(self, event: scenario.Event) -> None:
        # KRX stays closed; Nextrade's after-market trades (15:40-20:00) and takes orders.
        with contextlib.closing(Control(settings.KIS["BASE_URL"])) as control:
            control.post("/_sim/session", {"open": False, "nxt": True})
        self.say(
            "Nextrade's after-market opens (15:40-20:00): stocks trade there while KRX is "
            "closed; only profiles that allow Nextrade exits sell in it"
        )

    def on_operator_sell(self, event: scenario.Event) -> None:
        symbol, qty = scenario.OPERATOR_SELL
        position = Position.objects.filter(symbol=symbol).order_by("-opened_at").first()
        if position is None:
            raise RuntimeError(f"no position in {symbol} to sell")
        try:
            intent = services.exit_intent_open(
                position_id=position.pk,
                qty=qty,
                intent_type=IntentType.MANUAL,
                idempotency_key=f"demo-operator:{uuid.uuid4()}",
                reason="operator: sell by hand",
            )
        except InsufficientAvailableQty as exc:
            self.say(
                f"{event.note}, {qty} shares: refused by the ledger, {exc.qty - exc.locked} "
                f"available of {exc.qty} held ({exc.locked} already held by an exit)"
            )
            return
        self.say(f"{event.note}: granted {intent.qty} of {qty}")

    # --- beat ---------------------------------------------------------------------------------
    def exit_pass(self, expires_s: float) -> None:
        """The cadence's pass, run here and timed."""
        from trading.tasks import exit_pass_task

        self.passes += 1
        started = time.perf_counter()
        exit_pass_task()
        self.pass_ms.append((time.perf_counter() - started) * 1000)

    def beat(self) -> None:
        from execution.tasks import orders_expire_task, orders_sync_task, reconcile_task, sweep
        from picks.tasks import picks_sweep_task
        from trading.tasks import day_end_task, exit_orders_expire_task, gap_prequeue_task

        def day_end() -> None:
            counts = day_end_task()
            if counts.get("gate_closed"):
                self.say(
                    f"the day ends in the ledger: {counts['ended']} day order(s) ended, "
                    f"{counts['withdrawn']} unsent withdrawn; trading waits for the next "
                    "reconciliation"
                )

        tasks = {
            "execution.sweep": sweep,
            "execution.orders_sync": orders_sync_task,
            "execution.orders_expire": orders_expire_task,
            "trading.exit_orders_expire": exit_orders_expire_task,
            "trading.day_end": day_end,
            "execution.reconcile": reconcile_task,
            "picks.sweep": picks_sweep_task,
        }

        def prequeue() -> None:
            self.prequeued = gap_prequeue_task()
            self.say(f"GAP_DOWN pre-queue: thresholds kept hot for {self.prequeued} positions")

        pre = PrequeueDriver(send=prequeue)
        next_run = {name: clock.now() for name in tasks}
        try:
            while not self.stop.is_set():
                now = clock.now()
                waits = []
                for driver in (self.cadence, pre):
                    try:
                        waits.append(driver.tick(now))
                    except Exception as exc:  # noqa: BLE001 - beat goes on, as celery beat does
                        logger.warning("demo.beat %s: %s", type(exc).__name__, exc)
                        waits.append(0.1)
                for name, task in tasks.items():
                    if now >= next_run[name]:
                        next_run[name] = now + dt.timedelta(seconds=PERIODIC_S[name])
                        try:
                            task()
                        except Exception as exc:  # noqa: BLE001 - as above
                            logger.warning("demo.beat %s: %s: %s", name, type(exc).__name__, exc)
                self.stop.wait(max(0.005, min(waits) / self.speed))
        finally:
            connection.close()

    # --- what happened, as it happens ----------------------------------------------------------
    def poll(self) -> None:
        for intent in (
            OrderIntent.objects.exclude(pk__in=self.seen["intents"])
            .exclude(idempotency_key__startswith=report.EARLIER_INTENT)
            .order_by("created_at")
        ):
            self.seen["intents"].add(intent.pk)
            trigger = f", trade {intent.trigger_price:,}" if intent.trigger_price else ""
            self.say(
                f"{intent.intent_type:<16} {intent.symbol} {intent.side.lower()} "
                f"{intent.qty} limit {intent.limit_price:,}{trigger} · {intent.reason}",
                when=intent.created_at,
            )
        for fill in (
            Fill.objects.exclude(pk__in=self.seen["fills"])
            .exclude(broker_fill_key__startswith=report.EARLIER_FILL)
            .select_related("order")
            .order_by("pk")
        ):
            self.seen["fills"].add(fill.pk)
            self.say(
                f"fill             {fill.order.symbol} {fill.order.side.lower()} "
                f"{fill.qty} @ {fill.price:,}",
                when=fill.filled_at,
            )
        for alert in Alert.objects.exclude(pk__in=self.seen["alerts"]).order_by("pk"):
            self.seen["alerts"].add(alert.pk)
            self.say(f"ALERT [{alert.severity}] {alert.message}", when=alert.created_at)
        for pick in (
            Pick.objects.exclude(pk__in=self.seen["picks"])
            .exclude(status=Pick.Status.NEW)
            .order_by("pk")
        ):
            self.seen["picks"].add(pick.pk)
            outcome = (
                f"rejected at gate {pick.rejected_gate}: {pick.reject_reason}"
                if pick.status == Pick.Status.REJECTED
                else "routed"
            )
            self.say(
                f"pick {pick.external_id} {pick.side.lower()} {pick.symbol}: {outcome}",
                when=pick.routed_at or pick.received_at,
            )
        interval = market_calendar.cadence_at(
            clock.now(), self.cadence.windows(), self.cadence.default_ms
        )
        self.status(
            f"{clock.now_seoul():%H:%M:%S} KST · exit passes every "
            f"{interval if interval else '-'} ms · passes {self.passes} · "
            f"intents {len(self.seen['intents'])} · fills {len(self.seen['fills'])} · "
            f"alerts {len(self.seen['alerts'])}"
        )


class Streams:
    """Price sync and fill notices on one event loop, in a thread of their own."""

    def __init__(self, *, broker, arrivals: dict, watchlist: tuple[str, ...]) -> None:
        self.broker = broker
        self.sync = DemoPriceSync(broker=broker, watchlist=watchlist, arrivals=arrivals)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None

    def main(self) -> None:
        async def run():
            self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
            fills_ready, sync_ready = asyncio.Event(), asyncio.Event()

            async def both_ready():
                await fills_ready.wait()
                await sync_ready.wait()
                self.ready.set()

            await asyncio.gather(
                self.sync.run(self.stop, on_ready=sync_ready.set),
                fills_stream.run(broker=self.broker, stop=self.stop, on_ready=fills_ready.set),
                both_ready(),
            )

        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported by the session
            self.error = exc
            self.ready.set()
            raise

    def close(self) -> None:
        if self.loop is not None and self.stop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.stop.set)
