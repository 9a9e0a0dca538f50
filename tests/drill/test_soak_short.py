"""The short form of `make soak` in the suite: the real process set on one clock started in UTC,
across the close (a sell left working, a stop crossed after hours, another sold in Nextrade's
after-market) and the next morning's open (a 6 % gap). drill/soak.py's verdict holds each of
issues 24's and 26's assertions; this test checks that the verdict was reached, with what it
should have seen, and found nothing wrong."""

import json
import os
import subprocess
import sys

import pytest

from drill.soak import SYMBOLS

from ..support import ROOT


@pytest.mark.slow
def test_the_short_soak_holds(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "drill.soak",
            "--short",
            "--out",
            str(tmp_path),
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    result = json.loads((tmp_path / "results.json").read_text())
    assert result.get("violations") == [], (result.get("violations"), done.stderr[-3000:])
    # What the verdict judged: the gap and the stop crossed after hours were each sold at the
    # next open, within 2 s of its first trade, and KIS refused nothing.
    assert set(result["gap_down_lag_s"]) >= {SYMBOLS["E"], SYMBOLS["C"]}, result
    assert all(0 <= lag <= 2.0 for lag in result["gap_down_lag_s"].values()), result
    assert result["refused"] == 0
    # The stop crossed under the profile with Nextrade exits was sold in the after-market.
    phases = set(result["orders_per_phase"])
    assert "NXT:AFTER_MARKET" in phases, result
    assert phases <= {"KRX:CONTINUOUS", "KRX:CLOSING_AUCTION", "NXT:AFTER_MARKET"}, result
    assert result["reconciliations_overnight"][-1] == "MATCHED", result
    assert done.returncode == 0, done.stderr[-3000:]
