"""The demo's report: what was traded and earned, how fast each path was, what the ledger
refused, what the circuit breakers did, and whether the books agree; as JSON, markdown and two
charts (each stock's price with entries and exits, and the latency distribution)."""

import datetime as dt
import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

from prometheus_client import REGISTRY

from bench.charts import latency_chart
from bench.stats import quantile
from core import clock
from execution.models import Alert, Fill, IntentType, Order, OrderIntent, Position, TradingState
from picks.models import Pick

from . import scenario

RULES = (
    IntentType.GAP_DOWN,
    IntentType.EXIT_STOP_LOSS,
    IntentType.EXIT_TAKE_PROFIT,
    IntentType.EXIT_TRAILING,
    IntentType.EXIT_TIME,
    IntentType.EXIT_MAX_HOLD,
)
# The earlier days' entries that the session seeds: their intents' keys and their fills' keys.
EARLIER_INTENT, EARLIER_FILL = "demo-earlier:", "earlier:"
PATHS = {
    "tick_to_order_ms": "a trade reaches price sync → its exit's order accepted by KIS",
    "intent_to_order_ms": "an intent is written → its order accepted by KIS",
    "ingest_to_order_ms": "a pick reaches the API → its order accepted by KIS",
    "trade_handled_ms": "a trade reaches price sync → written, its positions evaluated",
    "exit_pass_ms": "one exit pass of the market cadence over every position",
}


# How an exit's reason names a volatility interruption (market/vi.py), in each language Aegis
# speaks: the demo runs in either.
VI_WORDS = ("volatility interruption", "변동성완화장치")


def figures(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    return {
        "p50": round(quantile(values, 50), 2),
        "p99": round(quantile(values, 99), 2),
        "max": round(max(values), 2),
        "n": len(values),
    }


def _ms(later: dt.datetime, earlier: dt.datetime, speed: float, jumps=()) -> float:
    """Real milliseconds between two readings of the simulated clock, less any stretch of the
    day skipped in between."""
    elapsed = (
        later
        - earlier
        - sum((skipped for landed, skipped in jumps if earlier < landed <= later), dt.timedelta())
    )
    return elapsed.total_seconds() * 1000 / speed


def _arrival(arrivals: list, intent: OrderIntent) -> dt.datetime | None:
    """When the trade that fired `intent` reached price sync: the last trade of its price at or
    before the intent was written."""
    best = None
    for at, price in arrivals:
        if at > intent.created_at:
            break
        if price == intent.trigger_price:
            best = at
    return best


def todays_fills() -> list[Fill]:
    return list(
        Fill.objects.exclude(broker_fill_key__startswith=EARLIER_FILL)
        .select_related("order__intent")
        .order_by("filled_at", "pk")
    )


def _why(order: Order) -> str:
    """The intent type the order was sent for ("?" for an order without an intent: the ledger
    records every order with one, but the column allows none)."""
    return order.intent.intent_type if order.intent is not None else "?"


def outage_window(session) -> tuple[dt.datetime, dt.datetime] | None:
    """When KIS was answering 503, if it did and stopped."""
    return (session.outage[0], session.outage[1]) if len(session.outage) >= 2 else None


def build(*, session, book: dict, trades_seen: int, trade_handled_ms: list[float]) -> dict:
    speed, jumps = session.speed, session.jumps
    today = list(
        OrderIntent.objects.exclude(idempotency_key__startswith=EARLIER_INTENT)
        .select_related("position")
        .order_by("created_at")
    )
    orders = {o.intent_id: o for o in Order.objects.filter(intent__in=today)}
    outage = outage_window(session)

    def in_outage(t) -> bool:
        return outage is not None and outage[0] <= t <= outage[1]

    paths = defaultdict(list)
    waited = []
    for intent in today:
        order = orders.get(intent.pk)
        if order is None or order.submitted_at is None:
            continue
        if in_outage(intent.created_at):
            waited.append(_ms(order.submitted_at, intent.created_at, speed, jumps))
            continue
        paths["intent_to_order_ms"].append(_ms(order.submitted_at, intent.created_at, speed, jumps))
        if intent.intent_type in RULES and intent.trigger_price:
            arrived = _arrival(session.arrivals.get(intent.symbol, []), intent)
            if arrived is not None:
                paths["tick_to_order_ms"].append(_ms(order.submitted_at, arrived, speed, jumps))
    # Measured with the real clock, for every trade and every pass.
    paths["trade_handled_ms"] = list(trade_handled_ms)
    paths["exit_pass_ms"] = list(session.pass_ms)
    picks = list(Pick.objects.select_related("intent").order_by("pk"))
    for pick in picks:
        order = orders.get(pick.intent_id) if pick.intent_id else None
        if order is not None and order.submitted_at is not None and not in_outage(pick.received_at):
            paths["ingest_to_order_ms"].append(
                _ms(order.submitted_at, pick.received_at, speed, jumps)
            )

    fills = todays_fills()
    trades = [
        {
            "at": f.filled_at.astimezone(clock.SEOUL).strftime("%H:%M:%S"),
            "symbol": f.order.symbol,
            "side": f.order.side,
            "qty": f.qty,
            "price": f.price,
            "why": _why(f.order),
            "realized_pnl": str(f.realized_pnl or 0),
            "fee": f.fee,
            "tax": f.tax,
            "amount": f.amount,
        }
        for f in fills
    ]
    costs = sum(f.fee + f.tax for f in fills)
    pnl: defaultdict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        pnl[f.order.symbol] += f.realized_pnl or 0
    last = {code: prints[-1][1] for code, prints in session.printed.items() if prints}
    unrealized = {
        p.symbol: str((last.get(p.symbol, p.avg_price) - p.avg_price) * p.qty)
        for p in Position.objects.filter(status=Position.Status.OPEN, qty__gt=0)
    }

    fired = Counter(i.intent_type for i in today if i.intent_type != IntentType.ENTRY)
    # Oversold: a position that sold more than it bought, or a sell that KIS refused (the
    # simulator, like KIS, refuses to sell more than the account holds); and, beside it,
    # whether the broker holds the shares the ledger says.
    bought: Counter[int] = Counter()  # shares, by position id
    sold: Counter[int] = Counter()
    for f in Fill.objects.select_related("order"):
        (bought if f.order.side == "BUY" else sold)[f.order.position_id] += f.qty
    oversold = [pid for pid in sold if sold[pid] > bought[pid]]
    account = next(a for a in book["accounts"] if a["hts_id"])
    broker_qty = {h["pdno"]: h["qty"] for h in account["holdings"]}
    ledger_qty: Counter[str] = Counter()
    for p in Position.objects.filter(status=Position.Status.OPEN):
        ledger_qty[p.symbol] += p.qty
    disagree = sorted(
        s for s in set(broker_qty) | set(ledger_qty) if broker_qty.get(s, 0) != ledger_qty.get(s, 0)
    )
    refused_sells = Order.objects.filter(side="SELL", status=Order.Status.REJECTED).count()

    alerts = [
        {
            "at": a.created_at.astimezone(clock.SEOUL).strftime("%H:%M:%S"),
            "kind": a.kind,
            "severity": a.severity,
            "subject": a.subject,
            "state": a.state,
            "message": a.message,
        }
        for a in Alert.objects.order_by("pk")
    ]
    # After the close: nothing decided or sent for KRX (nor at the simulator), the exits of the
    # profiles that allow Nextrade sold in its after-market, and what is held overnight.
    close = scenario.at(session.day, scenario.CLOSE, clock.SEOUL)
    exits_after = OrderIntent.objects.filter(created_at__gte=close).exclude(
        intent_type=IntentType.ENTRY
    )
    after_close = {
        "krx_exits_decided": exits_after.exclude(venue="NXT").count(),
        "krx_orders_sent": Order.objects.filter(submitted_at__gte=close)
        .exclude(venue="NXT")
        .count(),
        "krx_orders_at_kis": sum(
            1 for o in book["orders"] if o["ord_tmd"] >= "153000" and o["routed"] != "NXT"
        ),
        "nxt_exits": [
            {
                "symbol": i.symbol,
                "rule": i.intent_type,
                "at": i.created_at.astimezone(clock.SEOUL).strftime("%H:%M:%S"),
                "qty": i.qty,
                "status": i.status,
                "filled": sum(o.filled_qty for o in i.orders.all()),
            }
            for i in exits_after.filter(venue="NXT").order_by("created_at")
        ],
        "held_overnight": sorted(
            p.symbol for p in Position.objects.filter(status=Position.Status.OPEN, qty__gt=0)
        ),
        "day_ended": str(TradingState.objects.values_list("day_ended_for", flat=True).first()),
    }
    unsettled = {
        "intents_new": OrderIntent.objects.filter(status=OrderIntent.Status.NEW).count(),
        "orders_open": Order.objects.filter(status__in=Order.OPEN_STATUSES).count(),
        "picks_new": Pick.objects.filter(status=Pick.Status.NEW).count(),
    }
    return {
        "day": session.day.isoformat(),
        "speed": speed,
        "trades_printed": sum(len(v) for v in session.printed.values()),
        "trades_seen_by_pricesync": trades_seen,
        "exit_passes": session.passes,
        "gap_down_prequeued": session.prequeued,
        "rules_fired": {rule.value: fired.get(rule.value, 0) for rule in RULES}
        | {"MANUAL": fired.get(IntentType.MANUAL.value, 0)},
        "every_rule_fired": all(fired.get(rule.value) for rule in RULES),
        "trades": trades,
        "realized_pnl_krw": {s: str(v) for s, v in sorted(pnl.items())},
        "realized_pnl_total_krw": str(sum(pnl.values(), Decimal(0))),
        # The day's fills' broker fees and transaction tax (execution/costs.py), and the
        # realised P&L net of them.
        "costs_krw": costs,
        "realized_pnl_net_krw": str(sum(pnl.values(), Decimal(0)) - costs),
        "unrealized_pnl_krw": unrealized,
        "latency_ms": {name: figures(values) for name, values in sorted(paths.items())},
        "latency_samples_ms": {
            name: [round(v, 3) for v in values] for name, values in sorted(paths.items())
        },
        "waited_out_the_outage_ms": figures(waited),
        "ledger_refusals": int(REGISTRY.get_sample_value("aegis_ledger_refusals_total") or 0),
        "picks": [
            {
                "external_id": p.external_id,
                "symbol": p.symbol,
                "side": p.side,
                "status": p.status,
                "gate": p.rejected_gate,
                "reason": p.reject_reason,
            }
            for p in picks
        ],
        "http": list(session.http_answers),
        "alerts": alerts,
        "breaker_events": [a for a in alerts if a["kind"] == Alert.Kind.BREAKER],
        "oversells": len(oversold) + refused_sells,
        "sells_refused_by_kis": refused_sells,
        "ledger_broker_disagree": disagree,
        "unsettled": unsettled,
        "every_intent_settled": not any(unsettled.values()),
        "after_close": after_close,
        "vi_exits": [
            {
                "symbol": i.symbol,
                "rule": i.intent_type,
                "at": i.created_at.astimezone(clock.SEOUL).strftime("%H:%M:%S"),
                "reason": i.reason,
                "filled": sum(o.filled_qty for o in i.orders.all()),
                "fill_prices": sorted({f.price for o in i.orders.all() for f in o.fills.all()}),
            }
            for i in today
            if any(word in i.reason for word in VI_WORDS)
        ],
        "errors": list(session.errors),
    }


def markdown(result: dict) -> str:
    lines = [f"# Aegis demo: {result['day']}, {result['speed']:g}× real time", ""]
    lines += ["## Exit rules fired", "", "| rule | exits |", "|---|---|"]
    lines += [f"| {rule} | {n} |" for rule, n in result["rules_fired"].items()]
    lines += [
        "",
        "## Trades",
        "",
        "| time | symbol | side | qty | price | why | realised P&L |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['at']} | {t['symbol']} | {t['side']} | {t['qty']} | {t['price']:,} | "
        f"{t['why']} | {Decimal(t['realized_pnl']):,.0f} |"
        for t in result["trades"]
    ]
    lines += [
        "",
        f"Realised P&L: {Decimal(result['realized_pnl_total_krw']):,.0f} KRW before costs; "
        f"fees and tax {result['costs_krw']:,} KRW; **net "
        f"{Decimal(result['realized_pnl_net_krw']):,.0f} KRW**; still held: "
        + (
            ", ".join(
                f"{s} ({Decimal(v):,.0f} unrealised)"
                for s, v in result["unrealized_pnl_krw"].items()
            )
            or "nothing"
        ),
        "",
        "## Latency (real ms on this machine, embedded default)",
        "",
        "| path | from → to | p50 | p99 | max | n |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in result["latency_ms"].items():
        lines.append(
            f"| {name} | {PATHS.get(name, '')} | {f['p50']} | {f['p99']} | {f['max']} | {f['n']} |"
        )
    w = result["waited_out_the_outage_ms"]
    lines += [
        "",
        f"Exits that waited out the KIS outage: {w['n']} (intent → order p50 "
        f"{w['p50']} ms, max {w['max']} ms).",
        "",
        f"Ledger refusals: {result['ledger_refusals']}. Oversells (more sold than held, or a "
        f"sell KIS refused): {result['oversells']}. "
        f"Ledger and broker disagree on: {result['ledger_broker_disagree'] or 'nothing'}. "
        f"Every intent settled: {result['every_intent_settled']}.",
        "",
        "## Volatility interruption",
        "",
        *(
            f"- {v['at']} {v['symbol']} {v['rule']}: {v['reason']}; filled {v['filled']} at "
            f"{', '.join(f'{p:,}' for p in v['fill_prices']) or '-'}"
            for v in result["vi_exits"]
        ),
        "",
        "## After the close",
        "",
        f"On KRX: exits decided {result['after_close']['krx_exits_decided']}, orders sent "
        f"{result['after_close']['krx_orders_sent']} (at KIS: "
        f"{result['after_close']['krx_orders_at_kis']}). On Nextrade's after-market: "
        + (
            "; ".join(
                f"{n['at']} {n['symbol']} {n['rule']} {n['qty']} shares, {n['filled']} filled"
                for n in result["after_close"]["nxt_exits"]
            )
            or "nothing"
        )
        + f". Held overnight: {', '.join(result['after_close']['held_overnight']) or 'nothing'}; "
        f"the day ended in the ledger: {result['after_close']['day_ended']}.",
        "",
        "## Picks",
        "",
        "| pick | symbol | side | outcome |",
        "|---|---|---|---|",
    ]
    for p in result["picks"]:
        outcome = (
            p["status"]
            if p["status"] != "REJECTED"
            else f"rejected at gate {p['gate']}: {p['reason']}"
        )
        lines.append(f"| {p['external_id']} | {p['symbol']} | {p['side']} | {outcome} |")
    lines += ["", "## Alerts", ""]
    lines += [f"- {a['at']} [{a['severity']}] {a['message']}" for a in result["alerts"]] or [
        "- none"
    ]
    lines += ["", "![prices](prices.png)", "", "![latency](latency.png)", ""]
    return "\n".join(lines)


def write(result: dict, *, session, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(markdown(result))
    charts(result, session=session, out=out)


def charts(result: dict, *, session, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    segments = [
        (scenario.at(session.day, a, clock.SEOUL), scenario.at(session.day, b, clock.SEOUL))
        for a, b in session.segments
    ]
    stocks = [s for s in scenario.STOCKS if session.printed.get(s.code)]
    fig, axes = plt.subplots(
        len(stocks),
        len(segments),
        figsize=(13, 2.1 * len(stocks)),
        squeeze=False,
        sharey="row",
        gridspec_kw={"width_ratios": [1] * len(segments)},
    )
    fills = todays_fills()
    outage = outage_window(session)
    for row, stock in enumerate(stocks):
        prints = session.printed[stock.code]
        for col, (start, end) in enumerate(segments):
            ax = axes[row][col]
            xs = [t for t, _ in prints if start <= t <= end + dt.timedelta(minutes=3)]
            ys = [p for t, p in prints if start <= t <= end + dt.timedelta(minutes=3)]
            ax.plot(xs, ys, lw=1, color="#34495e")
            ax.axhline(stock.prev_close, lw=0.6, ls=":", color="#7f8c8d")
            for f in fills:
                if f.order.symbol != stock.code or not (
                    start <= f.filled_at <= end + dt.timedelta(minutes=3)
                ):
                    continue
                buy = f.order.side == "BUY"
                ax.scatter(
                    [f.filled_at],
                    [f.price],
                    marker="^" if buy else "v",
                    s=50,
                    zorder=3,
                    color="#27ae60" if buy else "#c0392b",
                )
                ax.annotate(
                    _why(f.order).replace("EXIT_", ""),
                    (f.filled_at, f.price),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
            if outage is not None and start <= outage[0] <= end:
                ax.axvspan(outage[0], outage[1], color="#e74c3c", alpha=0.12, lw=0)
            minutes = (end - start).total_seconds() / 60
            ax.xaxis.set_major_locator(
                mdates.MinuteLocator(
                    byminute=range(0, 60, 1 if minutes <= 6 else 3), tz=clock.SEOUL
                )
            )
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=clock.SEOUL))
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.set_ylabel(f"{stock.code}\n{stock.name}", fontsize=8)
    fig.suptitle(
        f"Aegis demo {result['day']}: trades printed, entries ▲ and exits ▼ "
        "(dotted: previous close; shaded: KIS answering 503)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out / "prices.png", dpi=90)
    plt.close(fig)
    latency_chart(
        [(name, {"demo": values}) for name, values in result["latency_samples_ms"].items()],
        out / "latency.png",
        title="Aegis demo: real ms to the order accepted (embedded default)",
    )
