"""/health/ says what a person on call asks next: the trading state, the KIS circuits, the feed."""

import datetime as dt

import pytest

from core import clock
from execution.alerts import breaker_transition
from execution.services import trading_state_set
from market.prices import best_price_write

pytestmark = pytest.mark.django_db


def test_health_reports_the_state_the_circuits_and_the_feed(client, new_symbol):
    first = client.get("/health/").json()
    assert first["status"] == "ok" and first["database"] == "ok" and first["cache"] == "ok"
    assert first["trading"]["trading_state"] == "ACTIVE"
    trading_state_set(state="HALTED", reason="drill", changed_by="ops")
    breaker_transition("kis-order", "closed", "open", 1)
    breaker_transition("kis-order", "open", "half-open", 1)
    at = clock.now() - dt.timedelta(seconds=30)
    best_price_write(symbol=new_symbol(), price=1_000, at=at, source="WS")
    report = client.get("/health/").json()["trading"]
    assert report["trading_state"] == "HALTED"
    assert report["kis_circuits"] == {"kis-order": "half-open"}
    assert report["last_trade_at"] == at.isoformat() and 29 <= report["last_trade_age_s"] <= 60
