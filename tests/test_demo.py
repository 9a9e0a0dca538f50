"""`make demo` runs on the embedded default (SQLite, no Redis) and shows the refusal it promises."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_without_any_server_and_never_oversells(tmp_path):
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{tmp_path}/demo.sqlite3",
           "AEGIS_AUTO_SUBMIT": "0"}
    result = subprocess.run([sys.executable, "manage.py", "demo", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["granted"] == [30, 30, 30, 10, 0, 0, 0, 0]  # 100 shares, never more
    assert summary["refused"] == 4
    assert summary["late_granted"] == 10  # exactly what the cancel released
    assert (summary["qty"], summary["locked"], summary["available"]) == (80, 80, 0)
    assert summary["realized_pnl"] == "29200.0000"  # 20 × (72,500 − 71,040)
    assert summary["oversells"] == 0
    assert "refused: 0 available (locked 100)" in result.stdout
