"""Two revisions side by side in one run: each benchmark run for one, then the other, in turns,
so that the machine's drift from hour to hour falls on both alike.

    python -m bench.compare 1d51c1c HEAD                      # ledger execution exits ticks ingest
    python -m bench.compare 1d51c1c HEAD ticks --rounds 3

Each revision is checked out into a clone of this repository in a temporary directory and runs
`scripts/with-services.sh python -m bench.run <module>` from its own tree, with this virtualenv's
Python (the requirements must agree) and the servers `make bench` starts. The table printed at
the end gives each headline figure as the p50 of every round, revision beside revision; the
whole of it is also written to bench/compare.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODULES = ["ledger", "execution", "exits", "ticks", "ingest"]
OUT = ROOT / "bench" / "compare.json"
SERVICES = {"AEGIS_PGBOUNCER": "1", "AEGIS_PGBOUNCER_CHECK_DELAY": "30", "AEGIS_PG_DURABLE": "1"}


def checkout(rev: str, into: Path) -> str:
    """A clone of this repository at `rev` in `into`; its short commit."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", rev], check=True)
    return subprocess.run(
        ["git", "-C", str(into), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def run_module(tree: Path, module: str) -> dict:
    """One benchmark in `tree`; the figures it wrote (empty if it failed)."""
    results = tree / "bench" / "results.json"
    results.unlink(missing_ok=True)
    done = subprocess.run(
        ["scripts/with-services.sh", sys.executable, "-m", "bench.run", module],
        cwd=tree,
        env=os.environ | SERVICES,
    )
    if done.returncode != 0 or not results.exists():
        return {}
    return {k: v for k, v in json.loads(results.read_text()).items() if k != "run"}


def p50(figure) -> float | None:
    if isinstance(figure, dict):
        for key in ("p50", "p50_us"):
            if isinstance(figure.get(key), int | float):
                return figure[key]
    return figure if isinstance(figure, int | float) and not isinstance(figure, bool) else None


def table(revs: list[str], rounds: list[dict[str, dict]]) -> str:
    keys = sorted({k for r in rounds for per in r.values() for k in per})
    lines = [
        "| figure (p50) | " + " | ".join(revs) + " |",
        "|---|" + "---|" * len(revs),
    ]
    for key in keys:
        cells = []
        for rev in revs:
            values = [p50(r.get(rev, {}).get(key)) for r in rounds]
            cells.append(", ".join("–" if v is None else f"{v:g}" for v in values))
        if any(c.strip("–, ") for c in cells):
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("modules", nargs="*", default=DEFAULT_MODULES)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aegis-compare-") as tmp:
        os.chmod(tmp, 0o755)  # the servers' own account runs from inside the trees
        trees = {}
        for name, rev in (("old", args.old), ("new", args.new)):
            tree = Path(tmp) / name
            trees[checkout(rev, tree)] = tree
        revs = list(trees)
        rounds: list[dict[str, dict]] = []
        for n in range(args.rounds):
            figures: dict[str, dict] = {rev: {} for rev in revs}
            # Alternate which revision goes first, so neither always runs on a warmer machine.
            order = revs if n % 2 == 0 else revs[::-1]
            for module in args.modules:
                for rev in order:
                    print(f"\n##### round {n + 1}: {module} at {rev}", flush=True)
                    figures[rev].update(run_module(trees[rev], module))
            rounds.append(figures)
    OUT.write_text(json.dumps({"revisions": revs, "rounds": rounds}, indent=2) + "\n")
    print("\n" + table(revs, rounds))
    failed = [rev for r in rounds for rev in revs if not r[rev]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
