"""The desk (desk/): the day's positions valued at their best prices, realised P&L net of fees
and tax, the orders in flight, the charts; the kill switch through the ledger's service, asked
twice; HALT on every admin page."""

import json
import re

import pytest
import redis
from django.urls import reverse

from core import clock
from execution import services
from execution.alerts import breaker_transition
from execution.models import TradingState
from market.models import PriceBar, Symbol
from tests.desk.day import desk_day
from tests.support.ledger import key
from trading.models import ExitProfile, PositionExitState

pytestmark = pytest.mark.django_db


def text(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_desk_shows_the_days_pnl_positions_and_charts(admin_client, new_symbol):
    day = desk_day(new_symbol)
    waiting = services.exit_intent_open(
        position_id=day["held"].pk,
        qty=5,
        limit_price=75_000,
        intent_type="MANUAL",
        idempotency_key=key(),
    )
    services.order_open(intent_id=waiting.pk)
    Symbol.objects.create(code=day["held"].symbol, name="삼성전자", market="KOSPI")
    breaker_transition("kis-order", "closed", "open", 1)
    html = text(admin_client.get(reverse("desk")))
    assert "kis-order: open since" in html
    assert f'id="desk-unrealised">{day["unrealized"]:+,}<' in html  # -330,000
    assert f'id="desk-realised">{day["realized_net"]:+,.0f}<' in html
    assert day["costs"] > 0
    assert "66,700" in html and day["held"].symbol in html and day["traded"].symbol in html
    orders = html[html.index('id="desk-orders"') :]
    orders = orders[: orders.index("</table>")]
    assert orders.count("<tr>") == 2  # a header and the one
    assert (
        f"{day['held'].symbol} 삼성전자" in orders and f"{day['held'].symbol}</a> 삼성전자" in html
    )
    assert html.count('class="desk-chart"') == 2
    assert PriceBar.objects.filter(symbol=day["held"].symbol).count() == 7
    charts = html[html.index("desk-charts") :]
    assert charts.count('class="buy"') == 2 and charts.count('class="sell"') == 1
    board = text(admin_client.get(reverse("desk") + "?board=1"))
    assert "desk-unrealised" in board and "<html" not in board


def test_a_position_whose_exits_kis_paused_says_so(admin_client, new_symbol):
    day = desk_day(new_symbol)
    profile = ExitProfile.objects.create(name="stop 3%", stop_loss_pct=3)
    PositionExitState.objects.create(
        position=day["held"], profile=profile, peak_qty=100, paused_at=clock.now(), paused_by="KIS"
    )
    html = text(admin_client.get(reverse("desk")))
    assert 'stop 3% <span class="desk-paused">(paused by KIS)</span>' in html


def test_the_admin_index_opens_on_the_days_figures(admin_client, new_symbol):
    day = desk_day(new_symbol)
    html = text(admin_client.get(reverse("admin:index")))
    assert f'id="desk-unrealised">{day["unrealized"]:+,}<' in html
    assert "Open the desk" in html and 'id="desk-state"' in html


def test_the_desk_is_for_staff_only(client, django_user_model):
    assert client.get(reverse("desk")).status_code == 302  # to the login page
    user = django_user_model.objects.create_user("trader", password="pw")
    client.force_login(user)
    assert client.get(reverse("desk")).status_code == 302


def test_the_kill_switch_asks_once_more_then_halts_and_every_page_says_so(admin_client):
    url = reverse("desk")
    asked = text(
        admin_client.post(url, {"op": "state", "state": "HALTED", "reason": "news on the wire"})
    )
    assert "Yes, set HALTED" in asked
    assert not TradingState.objects.filter(state="HALTED").exists()
    done = admin_client.post(
        url, {"op": "state", "state": "HALTED", "reason": "news on the wire", "confirm": "yes"}
    )
    assert done.status_code == 302
    state = TradingState.objects.get()
    assert (state.state, state.reason, state.changed_by) == ("HALTED", "news on the wire", "admin")
    for page in (url, reverse("admin:index"), reverse("admin:execution_order_changelist")):
        assert 'id="trading-banner">Trading HALTED: news on the wire' in text(
            admin_client.get(page)
        )


def test_the_kill_switch_refuses_a_blank_reason_and_changes_nothing(admin_client):
    html = text(
        admin_client.post(
            reverse("desk"), {"op": "state", "state": "HALTED", "reason": " ", "confirm": "yes"}
        )
    )
    assert "errorlist" in html
    assert not TradingState.objects.filter(state="HALTED").exists()


def test_the_desk_in_korean_by_a_persons_choice(admin_client, new_symbol):
    day = desk_day(new_symbol)
    switched = admin_client.post(
        reverse("set_language"), {"language": "ko", "next": "/admin/desk/"}
    )
    assert switched.status_code == 302
    html = text(admin_client.get(reverse("desk")))
    assert '<html lang="ko"' in html
    for korean in ("평가손익", "오늘 실현손익(순)", "오늘의 보유종목", "미체결 주문", "킬 스위치"):
        assert korean in html, korean
    assert "보유종목, 청산, 주문" in text(admin_client.get(reverse("admin:index")))  # its title
    assert f'id="desk-unrealised">{day["unrealized"]:+,}<' in html
    assert "Unrealised" not in html and "Positions today" not in html


def queued(client, queue: str) -> list[dict]:
    return [json.loads(m) for m in client.lrange(queue, 0, -1)]


def test_reconcile_now_asks_once_more_then_queues_one_manual_run(admin_client, settings):
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("execution")
    url = reverse("desk")
    asked = text(admin_client.post(url, {"op": "reconcile"}))
    assert "Yes, reconcile now" in asked and queued(client, "execution") == []
    done = admin_client.post(url, {"op": "reconcile", "confirm": "yes"})
    assert done.status_code == 302
    [message] = queued(client, "execution")
    assert message["headers"]["task"] == "execution.reconcile"
    assert "MANUAL" in message["headers"]["kwargsrepr"]
    client.delete("execution")
