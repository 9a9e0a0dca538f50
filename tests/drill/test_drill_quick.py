"""A short subset of `make drill` in the suite: the real process set against the simulator,
faults injected, the invariants checked (drill/). Its own database (aegis_drill) and Redis
database on the suite's servers; every process it starts is stopped by the drill."""

import json
import os
import subprocess
import sys

import pytest

from drill.scenarios import QUICK

from ..support import ROOT


@pytest.mark.slow
def test_the_quick_drill_holds(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "drill",
            "--only",
            ",".join(QUICK),
            "--out",
            str(tmp_path),
            "--logs",
            str(tmp_path / "logs"),
            "--settle-hold",
            "12",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    results = json.loads((tmp_path / "results.json").read_text())["scenarios"]
    assert set(results) == set(QUICK), done.stderr[-3000:]
    for name, result in results.items():
        assert "skipped" not in result, result
        assert (result["duplicates"], result["lost"]) == (0, 0), (name, result["violations"])
        assert result["invariants_held"], (name, result["violations"])
    assert done.returncode == 0, done.stderr[-3000:]
