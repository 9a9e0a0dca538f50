"""An entry too old to send is withdrawn (execution.services.orders.entry_order_expire) unless a
sender claimed its order first: under a race, exactly one of the two wins, on real PostgreSQL
connections. The withdrawal's paths end to end, against the KIS simulator, are in
tests/execution/test_execution_submit.py."""

import pytest

from execution import services
from execution.services.claim import order_claim
from execution.services.orders import entry_order_expire
from tests.support import at_once
from tests.support.ledger import key


@pytest.mark.django_db(transaction=True)
def test_an_expiry_and_a_claim_racing_over_one_order_never_both_win(new_symbol, settings):
    settings.EXECUTION_AUTO_SUBMIT = False
    for _ in range(12):
        intent = services.entry_intent_open(symbol=new_symbol(), qty=1, idempotency_key=key())
        order = services.order_open(intent_id=intent.pk)
        won = dict(
            at_once(
                lambda who, step: (who, step()),
                [
                    ("claim", lambda o=order: order_claim(order_id=o.pk, window_s=10) is not None),
                    ("expire", lambda o=order: entry_order_expire(order_id=o.pk, claim=None)),
                ],
            )
        )
        assert won["claim"] != won["expire"], won  # one, and only one
        order.refresh_from_db()
        if won["claim"]:
            assert order.status == "NEW" and order.send_started_at is not None
        else:
            assert order.status == "CANCELLED" and order.send_started_at is None
            assert order.reject_reason.startswith("expired")
    assert entry_order_expire(order_id=order.pk, claim=None) is False  # settled either way
