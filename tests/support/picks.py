"""Picks for the tests: a pick's JSON and its POST to the ingest endpoint, the routing tests'
trading day, and a stored pick's order waited for at the broker."""

import datetime as dt
import json

from django.test import Client

from core import clock
from execution.models import Order
from picks.models import PickSource
from tests.support import wait_until


class SendHere:
    """A sender (execution/dispatch.py) that sends each committed intent's order from the
    thread that committed it: a test reads the outcome as soon as its route returns."""

    def __init__(self, broker) -> None:
        self.broker = broker

    def __call__(self, intent_id: str) -> bool:
        from execution.sender import send_now

        send_now(intent_id, broker=self.broker)
        return True

    def recorded(self, order) -> bool:
        from execution.sender import send_recorded

        send_recorded(order, broker=self.broker)
        return True


DAY = dt.date(2026, 11, 24)  # a Tuesday, a KRX trading day
CLOCK = clock.ShiftedClock(dt.datetime.combine(DAY, dt.time(10), clock.SEOUL))


def a_pick(source: PickSource, n: int = 1, /, **overrides) -> dict:
    pick = {
        "source": source.code,
        "external_id": f"ext-{n}",
        "symbol": "005930",
        "side": "BUY",
        "budget_krw": 1_000_000,
        "limit_price": 71_000,
        "score": "0.5",
        "generated_at": clock.now().isoformat(),
    }
    pick.update(overrides)
    return {k: v for k, v in pick.items() if v is not ...}


def post(client, token: str | None, body, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/picks/ingest", data=data, content_type="application/json", **headers)


def ingest(source_and_token, *picks: dict) -> list[int]:
    source, token = source_and_token
    answer = post(Client(), token, list(picks))
    assert answer.status_code == 202, answer.content
    return answer.json()["ids"]


def submitted(pick_id: int) -> Order:
    wait_until(
        lambda: Order.objects.filter(intent__picks=pick_id, status="SUBMITTED").exists(),
        f"pick {pick_id}'s order at the broker",
    )
    return Order.objects.get(intent__picks=pick_id)
