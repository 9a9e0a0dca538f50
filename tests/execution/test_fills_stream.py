"""A fill notice on KIS's WebSocket brings the order's fills into the ledger at once, through the
`stream_fills` process, with no periodic sync involved.
"""

import pytest

from execution import services
from execution.models import Order, Position
from execution.services.submission import intent_submit
from tests.support import wait_until
from tests.support.kis import client_for, sim_dict
from tests.support.ledger import key
from tests.support.workers import fill_stream_running

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


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
    wait_until(lambda: Order.objects.get(intent=intent).filled_qty == 4, "the first notice's sync")
    kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 0})  # the last 3
    wait_until(lambda: Order.objects.get(intent=intent).status == "FILLED", "the second notice")
    assert Position.objects.get(pk=intent.position_id).qty == 7
