"""`manage.py pricesync` as deployed: a clean stop (SIGTERM) writes the minute bars still open,
so the desk's chart of the day keeps its last minutes."""

import signal
import subprocess
import sys

import pytest

from market.models import BestPrice, PriceBar
from tests.support import ROOT, direct_database_env, wait_until
from tests.support.workers import worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SYMBOL = "005930"


def test_a_clean_stop_writes_the_open_minute_bar(kis_sim, tmp_path):
    log = tmp_path / "pricesync.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "pricesync", "--watch", SYMBOL],
            cwd=ROOT,
            env=worker_env(kis_sim) | direct_database_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "pricesync following" in log.read_text(), "pricesync ready", 60)
        kis_sim.control("/_sim/prices", {"pdno": SYMBOL, "path": [71_100, 71_300]})
        kis_sim.control("/_sim/step", {"pdno": SYMBOL, "steps": 2})
        wait_until(
            lambda: BestPrice.objects.filter(symbol=SYMBOL, price=71_300).exists(),
            "the trades stored",
            30,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    # The last trade's minute was still open when pricesync stopped: only the stop wrote it.
    last = PriceBar.objects.filter(symbol=SYMBOL).order_by("minute").last()
    assert last is not None and last.close == 71_300, log.read_text()[-3000:]
