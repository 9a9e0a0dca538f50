"""Benchmark: the open-bell burst. n exits decided at one instant (n positions gapping down at
09:00:00), sent through the deployed execution worker (doorbell lanes) against the KIS
simulator on a real key (20 calls/s) and on a paper key (2 calls/s): the seconds from the
decision until KIS has accepted the last of them, beside the floor n ÷ rate that KIS's rate
allows; the orders at the simulator per intent (a duplicate is any second one); and how closely
they went out in the documented order, the largest loss first (trading.services.exit_pass): the
largest shift of an exit's place between the decided order and the accepted one.

Prints a table and a JSON line ("open_bell_burst": {"real": {...}, "paper": {...}}); never fails
on a time. Run it with `make bench` (BENCH_BURST_N: n, default 100).
"""

import json
import os
import secrets
import socket
import sys
import time
import uuid
from pathlib import Path

from bench.execution import start_worker, stop_worker, wait_ready
from kis_simulator.process import Control, SimulatorNotStarted, simulator_start, simulator_stop

N = int(os.environ.get("BENCH_BURST_N", "100"))
COST = 10_000
RATES = {"real": 20, "paper": 2}


def _symbols(n: int) -> list[str]:
    return [f"{900000 + i:06d}" for i in range(n)]


def burst(flavour: str, n: int) -> dict:
    """One burst on a fresh simulator of `flavour`, with its own worker."""
    from django.conf import settings
    from django.db import transaction

    from core import clock
    from execution import services
    from execution.broker import get_broker
    from execution.models import Order, Position

    appkey, appsecret = secrets.token_hex(18), secrets.token_hex(90)
    symbols = _symbols(n)
    try:
        sim, base_url, ws_url = simulator_start(
            "--flavour",
            flavour,
            "--app",
            f"{appkey}:{appsecret}",
            "--account",
            f"50000001-01:{10**11}:bench-hts",
            *[arg for s in symbols for arg in ("--symbol", f"{s}:{COST}")],
        )
    except SimulatorNotStarted as exc:
        raise SystemExit(str(exc)) from None
    kis_env = {
        "KIS_ENV": "simulator",
        "KIS_FLAVOUR": flavour,
        "KIS_BASE_URL": base_url,
        "KIS_WS_URL": ws_url,
        "KIS_ACCOUNT": "50000001-01",
        "KIS_HTS_ID": "bench-hts",
        "KIS_QUERY_APP_KEY": appkey,
        "KIS_QUERY_APP_SECRET": appsecret,
        "KIS_RATE_PER_SECOND": str(RATES[flavour]),
    }
    os.environ.update(kis_env)
    settings.KIS.update(
        {
            "ENV": "simulator",
            "FLAVOUR": flavour,
            "BASE_URL": base_url,
            "WS_URL": ws_url,
            "ACCOUNT": "50000001-01",
            "HTS_ID": "bench-hts",
            "QUERY_APP_KEY": appkey,
            "QUERY_APP_SECRET": appsecret,
            "RATE_PER_SECOND": RATES[flavour],
        }
    )
    get_broker.cache_clear()
    control = Control(base_url)
    worker = None
    try:
        # The account holds n positions of 10 shares each, in the ledger and at KIS.
        control.post(
            "/_sim/accounts",
            {
                "cano": "50000001",
                "acnt_prdt_cd": "01",
                "cash": 10**11,
                "hts_id": "bench-hts",
                "holdings": [{"pdno": s, "qty": 10, "avg_price": COST} for s in symbols],
            },
        )
        settings.EXECUTION_AUTO_SUBMIT = False
        positions = []
        for i, symbol in enumerate(symbols):
            intent = services.entry_intent_open(
                symbol=symbol,
                qty=10,
                limit_price=COST,
                idempotency_key=f"burst-entry:{uuid.uuid4()}",
            )
            order = services.order_open(intent_id=intent.pk)
            order = services.order_mark_submitted(
                order_id=order.pk, broker_order_no=f"9{flavour[0]}{i:08d}"
            )
            services.fill_apply(
                order_id=order.pk, broker_fill_key=f"burst:{order.pk}", qty=10, price=COST
            )
            positions.append(Position.objects.get(pk=intent.position_id))
        settings.EXECUTION_AUTO_SUBMIT = True
        get_broker().price(symbols[0])  # a token in the shared cache before the clock starts
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"aegis-bench-burst-{flavour}.log"
        name = f"bench-burst-{flavour}-{os.getpid()}@{socket.gethostname()}"
        worker = start_worker(log, name)
        wait_ready(worker, name, log)
        time.sleep(2)  # the lanes listening, the rate window empty
        # Gapped down at the bell: each position's loss differs (deeper for later ones); the
        # exits are opened as exit_pass opens them, largest loss first.
        # (10 to 25 ticks down: within the day's lower limit, KIS takes them all.)
        prices = {p.pk: COST - 100 * (1 + i % 25) for i, p in enumerate(positions)}
        ordered = sorted(positions, key=lambda p: (COST - prices[p.pk]) * p.qty, reverse=True)
        decided = clock.now()
        intents = []
        for position in ordered:
            with transaction.atomic():
                intents.append(
                    services.exit_intent_open(
                        position_id=position.pk,
                        qty=position.qty,
                        intent_type="GAP_DOWN",
                        limit_price=prices[position.pk],
                        idempotency_key=f"burst:{uuid.uuid4()}",
                    )
                )
        deadline = time.monotonic() + n / RATES[flavour] * 3 + 60
        ids = [i.pk for i in intents]
        while Order.objects.filter(intent_id__in=ids, status="SUBMITTED").count() < n:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # Then keep looking, for a late duplicate.
        time.sleep(3)
        accepted = dict(
            Order.objects.filter(intent_id__in=ids, broker_order_no__isnull=False).values_list(
                "intent_id", "submitted_at"
            )
        )
        at_kis = [
            o
            for o in control.call("GET", "/_sim/book")["orders"]
            if o["side"] == "SELL" and o["pdno"] in set(symbols)
        ]
        per_symbol: dict[str, int] = {}
        for o in at_kis:
            per_symbol[o["pdno"]] = per_symbol.get(o["pdno"], 0) + 1
        last = max(accepted.values()) if accepted else None
        # How far each exit's place among the accepted moved from its place in the decided
        # order: the lanes (4) each hold one order while waiting for a rate slot, so a few
        # places at most.
        went = [pk for pk, _ in sorted(accepted.items(), key=lambda kv: kv[1])]
        place = {pk: i for i, pk in enumerate(pk for pk in ids if pk in accepted)}
        shifts = [abs(i - place[pk]) for i, pk in enumerate(went)]
        return {
            "n": n,
            "rate": RATES[flavour],
            "seconds": round((last - decided).total_seconds(), 3) if last else None,
            "floor_s": round(n / RATES[flavour], 3),
            "accepted": len(accepted),
            "duplicates": sum(c - 1 for c in per_symbol.values() if c > 1),
            "lost": n - len(per_symbol),
            "order": "largest loss first",
            "max_place_shift": max(shifts, default=0),
        }
    finally:
        if worker is not None:
            stop_worker(worker)
        control.close()
        simulator_stop(sim)


def one(flavour: str) -> int:
    """One burst in this process (its own database, given by the caller): a JSON line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aegis.settings")
    import django

    django.setup()
    from django.conf import settings

    from execution import services

    if not settings.REDIS_URL:
        print(
            "bench/burst.py measures PostgreSQL and Redis: run it with `make bench`.",
            file=sys.stderr,
        )
        return 2
    services.trading_state_set(state="ACTIVE", reason="benchmark", changed_by="bench")
    print(json.dumps({flavour: burst(flavour, N)}))
    return 0


def main() -> int:
    """Each key's burst in a process and a database of its own (KIS numbers its orders afresh
    each day, and so does each simulator)."""
    import subprocess

    from bench.run import ROOT, fresh_database

    results = {}
    for flavour in ("real", "paper"):
        env = os.environ | fresh_database(f"burst_{flavour}") | {"DEBUG": "false"}
        run = subprocess.run(
            [sys.executable, "-u", "-m", "bench.burst", flavour],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if run.returncode != 0 or not lines:
            print(run.stdout[-3000:], file=sys.stderr)
            return 1
        results |= json.loads(lines[-1])
    print(
        f"open-bell burst: {N} exits decided at one instant, through the execution worker's "
        "lanes to the KIS simulator"
    )
    print(
        f"{'key':<6} {'rate/s':>6} {'seconds':>8} {'floor s':>8} {'ratio':>6} "
        f"{'dup':>4} {'lost':>5} {'max place shift':>16}"
    )
    for flavour, r in results.items():
        ratio = r["seconds"] / r["floor_s"] if r["seconds"] else float("nan")
        print(
            f"{flavour:<6} {r['rate']:>6} {r['seconds'] or float('nan'):>8.2f} "
            f"{r['floor_s']:>8.2f} {ratio:>6.3f} {r['duplicates']:>4} {r['lost']:>5} "
            f"{r['max_place_shift']:>16}"
        )
    print(json.dumps({"open_bell_burst": results}))
    return 0


if __name__ == "__main__":
    sys.exit(one(sys.argv[1]) if len(sys.argv) > 1 else main())
