"""Every benchmark in one run, as `make bench` runs it: each module in its own process (their own
output shown as it comes), each one's JSON line gathered into bench/results.json, and a markdown
table of the headline figures in bench/results.md (the README links to it).

    python -m bench.run               # all of them
    python -m bench.run exits ingest  # some

Beside PostgreSQL and Redis, as deployed: `make bench` starts and stops them, PostgreSQL
flushing every commit and PgBouncer in front of it; pricesync and the execution worker connect
straight to PostgreSQL, the rest through PgBouncer (bench.execution.hot_database_env). Each
benchmark gets a database of its own, created and migrated for it (a simulator starts
its order numbers afresh, and KIS's numbers are unique per day). A benchmark that fails is
reported and the others still run; the exit status says so.
"""

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.charts import latency_chart
from bench.execution import hot_database_env

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["ledger", "execution", "exits", "ticks", "ingest", "stress", "burst"]
RESULTS = ROOT / "bench" / "results.json"
TABLE = ROOT / "bench" / "results.md"
SAMPLES = ROOT / "bench" / "samples.json"  # each latency measured, in ms, by results.json key
CHART = ROOT / "bench" / "latency.png"

# (results.json key, what it measures, the review's baseline key)
HEADLINES = [
    ("intent_to_order_ms", "intent commit → order accepted", "intent_to_order_polling_ms"),
    ("tick_to_order_ms", "trade → exit order accepted", "tick_to_order_polling_ms"),
    ("ingest_to_order_ms", "HTTP pick → entry order accepted", "ingest_to_order_scheduler_ms"),
    ("exit_pass_10k_ms", "exit pass over 10,000 positions", "exit_pass_10k_naive_ms"),
]


def fresh_database(module: str) -> dict[str, str]:
    """A new, migrated database for one benchmark: the environment that points at it (through
    PgBouncer when DATABASE_URL goes through it; created over the direct connection)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"aegis_bench_{module}"
    direct = os.environ.get("DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"]
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        variable: urlunsplit(urlsplit(os.environ[variable])._replace(path="/" + name))
        for variable in ("DATABASE_URL", "DATABASE_DIRECT_URL")
        if os.environ.get(variable)
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, env=os.environ | env
    )
    return env


def run_one(module: str) -> dict | None:
    """Run bench.<module> on a fresh database, echo its output, and return its last JSON line
    (None on failure)."""
    print(f"\n=== bench.{module} ===", flush=True)
    # Every process a benchmark starts runs with DEBUG off, as deployed (no query log kept). A
    # benchmark sends at whatever hour it runs: the market-hours check of a claim is off.
    env = os.environ | fresh_database(module) | {"DEBUG": "false", "AEGIS_MARKET_HOURS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", f"bench.{module}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    found = None
    for line in proc.stdout:
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                pass
            else:  # echoed without its raw samples (they go to bench/samples.json)
                line = json.dumps({k: v for k, v in found.items() if k != "samples_ms"}) + "\n"
        print(line, end="", flush=True)
    if proc.wait() != 0:
        print(f"bench.{module} failed with exit status {proc.returncode}", file=sys.stderr)
        return None
    return found


def _cell(figure) -> str:
    if not isinstance(figure, dict) or figure.get("p50") is None:
        return "–"
    return f"{figure['p50']:,} / {figure['p99']:,} (n {figure['n']:,})"


def table(results: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['run']['at']} on {results['run']['machine']}, commit "
        f"{results['run']['commit']}. Latencies in ms as p50 / p99 (n).",
        "",
        "| path | Aegis | the review's baseline |",
        "|---|---|---|",
    ]
    for key, what, baseline in HEADLINES:
        lines.append(f"| {what} | {_cell(results.get(key))} | {_cell(results.get(baseline))} |")
    lines += ["", "| figure | value |", "|---|---|"]
    for key in (
        "exit_pass_10k_queries",
        "cache_query_reduction",
        "ingest_picks_per_s",
        "oversells",
    ):
        value = results.get(key)
        if key == "cache_query_reduction" and value is not None:
            value = f"{value:.2%}"
        lines.append(f"| {key} | {value if value is not None else '–'} |")
    lines += ["", "Each latency measured, as histograms: ![latency histograms](latency.png)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    modules = argv or MODULES
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        print(f"unknown benchmarks {unknown}; known: {MODULES}", file=sys.stderr)
        return 2
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True
        ).stdout.strip()
        or "unknown"
    )
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and argv else {}
    samples = json.loads(SAMPLES.read_text()) if SAMPLES.exists() and argv else {}
    failed = []
    for module in modules:
        found = run_one(module)
        if found is None:
            failed.append(module)
        else:
            samples.update(
                {
                    k: [round(v, 3) for v in values]
                    for k, values in found.pop("samples_ms", {}).items()
                }
            )
            results.update(found)
    results["run"] = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "commit": commit,
        "modules": modules,
        "failed": failed,
        "pgbouncer": os.environ.get("DATABASE_POOLING") == "pgbouncer",
        "hot_processes_direct": bool(hot_database_env()),
        "commits_flushed": os.environ.get("AEGIS_PG_DURABLE") == "1",
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    TABLE.write_text(table(results))
    SAMPLES.write_text(json.dumps(samples, sort_keys=True) + "\n")
    latency_chart(
        [
            (
                what,
                {"Aegis": samples.get(key, []), "the review's baseline": samples.get(baseline, [])},
            )
            for key, what, baseline in HEADLINES
        ],
        CHART,
        title=f"make bench {results['run']['at']} (commit {commit}): Aegis against "
        "the review's baselines, in the same run",
    )
    print(
        f"\nwrote {RESULTS.relative_to(ROOT)}, {TABLE.relative_to(ROOT)}, "
        f"{SAMPLES.relative_to(ROOT)} and {CHART.relative_to(ROOT)}"
    )
    print(TABLE.read_text())
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
