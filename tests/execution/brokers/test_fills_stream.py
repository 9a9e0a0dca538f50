"""A fill notice on KIS's WebSocket brings the order's fills into the ledger at once, through the
`stream_fills` process, with no periodic sync involved.
"""

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from execution import services
from execution.models import Order, Position
from execution.services.submission import intent_submit
from tests.execution.brokers.kis_worker import client_for
from tests.execution.brokers.test_execution_submit import wait_for, worker_env
from tests.execution.brokers.test_kis_client import sim_dict
from tests.ledger_helpers import key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def fill_stream_running(sim, log: Path, env: dict | None = None):
    """`manage.py stream_fills` against `sim` (`env` on top of worker_env), until the block ends."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "stream_fills"], cwd=ROOT,
                                env=worker_env(sim) | (env or {}), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "streaming fill notices" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def stream(kis_sim, tmp_path):
    with fill_stream_running(kis_sim, tmp_path / "stream.log") as log:
        yield log


def test_a_fill_notice_syncs_its_order_at_once(kis_sim, stream, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    broker = client_for(sim_dict(kis_sim), rate=200)
    kis_sim.control("/_sim/limits", {"max_fill_per_step": 4})
    intent = services.entry_intent_open(symbol="005930", qty=7, idempotency_key=key())
    intent_submit(intent_id=intent.pk, broker=broker)
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})  # 4 fill: a notice goes out
    wait_for(lambda: Order.objects.get(intent=intent).filled_qty == 4, "the first notice's sync")
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})  # the last 3
    wait_for(lambda: Order.objects.get(intent=intent).status == "FILLED", "the second notice")
    assert Position.objects.get(pk=intent.position_id).qty == 7
