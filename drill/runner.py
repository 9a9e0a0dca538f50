"""`python -m drill`: run the scenarios, write drill/results.json and drill/results.md, exit
non-zero when any scenario found a duplicate, a lost order or a broken invariant."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import time
from pathlib import Path

from .cluster import DB_NAME, ROOT, TEMPLATE_DB, Cluster, DrillError, Services, trading_day

logger = logging.getLogger("drill")

DRILL_DIR = Path(__file__).resolve().parent


def _django(services: Services) -> None:
    """This process's Django, on the drill's database straight (never through the proxies)."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "aegis.settings",
            "AEGIS_ENV": "development",
            "DATABASE_URL": services.url("pg", proxied=False),
            "DATABASE_DIRECT_URL": services.url("pg", proxied=False),
            "DATABASE_POOLING": "",
            "REDIS_URL": services.url("redis", proxied=False),
            "KIS_ENV": "simulator",
            "AEGIS_AUTO_SUBMIT": "0",
        }
    )
    for name in [n for n in os.environ if n.startswith("AEGIS_CLOCK_")]:
        del os.environ[name]
    import django

    django.setup()


def _database_template(services: Services) -> None:
    from django.core.management import call_command
    from django.db import connections

    services.admin(
        f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)",
        f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)",
        f"CREATE DATABASE {DB_NAME}",
    )
    call_command("migrate", verbosity=0)
    connections.close_all()
    services.admin(f"CREATE DATABASE {TEMPLATE_DB} TEMPLATE {DB_NAME}")


def _database_fresh(services: Services) -> None:
    from django.db import connections

    connections.close_all()
    services.admin(
        f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)",
        f"CREATE DATABASE {DB_NAME} TEMPLATE {TEMPLATE_DB}",
    )
    services.redis_flush()


def run_scenario(scenario, services: Services, *, logs: Path, options) -> dict:
    from core import clock
    from drill import invariants
    from drill.scenarios import Run, Skipped, requires_faketime, seed

    started = time.monotonic()
    try:
        requires_faketime(scenario)
    except Skipped as exc:
        return {"skipped": str(exc)}
    _database_fresh(services)
    day = trading_day(clock.now_seoul().date())
    hh, mm, ss = (int(x) for x in scenario.at.split(":"))
    start = dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=clock.SEOUL)
    origin = time.time() + scenario.lead_s
    shifted = clock.ShiftedClock(start, origin=origin)
    symbols = [f"{900000 + i:06d}" for i in range(scenario.positions)]
    from .scenarios import PRICE

    cluster = Cluster(
        services,
        logs=logs / scenario.name,
        flavour=scenario.flavour,
        clock_start=start,
        clock_origin=origin,
        symbols=dict.fromkeys(symbols, PRICE),
        env=scenario.env,
    )
    for proxy in services.proxies.values():
        proxy.clear()
    run = Run(
        name=scenario.name,
        cluster=cluster,
        services=services,
        clock=shifted,
        symbols=symbols,
        options=options,
    )
    try:
        cluster.simulator_start()
        seed(run, symbols)
        cluster.run_once("reconcile", "--startup", "--wait", "60")
        names = scenario.processes or None
        cluster.start_all(**({"names": names} if names else {}), skews=scenario.skews)
        with clock.installed(shifted):
            run.started = clock.now()
            scenario.body(run)
            from django.db import close_old_connections

            close_old_connections()
            snap = invariants.snapshot_take(
                run.book(),
                cano="50000001",
                since=None,
                expected_exits=tuple(run.expected),
                taken_at=clock.now(),
            )
        verdict = invariants.check(snap)
        verdict.violations += run.violations
        result = verdict.as_dict()
    except DrillError as exc:
        result = {
            "duplicates": None,
            "lost": None,
            "orders": None,
            "invariants_held": False,
            "violations": [f"drill error: {exc}"],
        }
    finally:
        cluster.stop()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["description"] = scenario.description
    return result


def passed(result: dict) -> bool:
    return "skipped" in result or (
        result.get("duplicates") == 0
        and result.get("lost") == 0
        and result.get("invariants_held") is True
    )


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"scenarios": results}, indent=2, ensure_ascii=False) + "\n"
    )
    lines = [
        "| scenario | duplicates | lost | invariants held | orders | seconds | result |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | | | | | | skipped: {r['skipped']} |")
            continue
        lines.append(
            f"| {name} | {r['duplicates']} | {r['lost']} | "
            f"{'yes' if r['invariants_held'] else 'no'} | {r['orders']} | "
            f"{r['seconds']} | {'pass' if passed(r) else 'FAIL'} |"
        )
    failing = {n: r for n, r in results.items() if not passed(r)}
    if failing:
        lines += ["", "Violations:", ""]
        for name, r in failing.items():
            for v in r.get("violations", [])[:20]:
                lines.append(f"- {name}: {v}")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def services_start() -> Services:
    """Logging, SIGTERM as an interrupt (the services are stopped on the way out), and the
    services of scripts/with-services.sh behind their fault proxies: a drill's or a soak's
    start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    services = Services.from_environ()
    services.start_proxies()
    return services


def main(argv: list[str] | None = None) -> int:
    from .scenarios import SCENARIOS, Options

    parser = argparse.ArgumentParser(prog="python -m drill", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--out", default=str(DRILL_DIR), help="where results.json/.md go")
    parser.add_argument(
        "--logs", default=str(ROOT / "var" / "drill"), help="each process's log, per scenario"
    )
    parser.add_argument(
        "--settle-hold",
        type=float,
        default=20.0,
        help="seconds the cluster must stay quiet before the check",
    )
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:36} {s.description}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; --list shows them")
    services = services_start()
    results: dict = {}
    try:
        _django(services)
        _database_template(services)
        for name in names:
            logger.info("drill: %s ...", name)
            results[name] = run_scenario(
                SCENARIOS[name],
                services,
                logs=Path(args.logs),
                options=Options(settle_hold_s=args.settle_hold),
            )
            r = results[name]
            logger.info(
                "drill: %s: %s %s",
                name,
                "pass" if passed(r) else "FAIL",
                {
                    k: r.get(k)
                    for k in ("duplicates", "lost", "invariants_held", "orders", "seconds")
                },
            )
            for v in r.get("violations", [])[:10]:
                logger.info("drill:   %s", v)
    finally:
        services.stop_proxies()
        write_results(results, Path(args.out))
    return 0 if all(passed(r) for r in results.values()) and results else 1
