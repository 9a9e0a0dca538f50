"""The execution app in Korean, Aegis's default language: an alert raised by a process that runs
in Korean is kept and sent in Korean, a person who chose Korean reads the ledger's admin (its
alerts, its positions, a refusal's reason) in Korean, and the trader's notices read in Korean.
The suite runs in English (tests/conftest.py); each test asks for Korean where it says so."""

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from execution import alerts, services
from execution.exceptions import InsufficientAvailableQty
from execution.models import Alert, IntentType, Notification, Side
from execution.notify import texts
from tests.support.ledger import key, open_position
from tests.support.notify import configure

pytestmark = pytest.mark.django_db

# When each test's circuit "opened": the breaker alert's key.
_episodes = itertools.count(1_800_000_000)


def breaker_opened(language: str) -> Alert:
    """The KIS order circuit's opening, alerted by a process that runs in `language`."""
    episode = next(_episodes)
    with translation.override(language):
        alerts.breaker_transition("kis-order", "closed", "open", episode)
    return Alert.objects.get(key=f"breaker:kis-order:open:{episode}")


def in_korean(client) -> None:
    """The person behind `client` chooses Korean, as the admin's header lets them."""
    switched = client.post(reverse("set_language"), {"language": "ko", "next": "/admin/"})
    assert switched.status_code == 302


def test_an_alert_raised_in_korean_is_kept_and_sent_in_korean(settings):
    # Slack configured: the alert's row in the outbox holds the text it is sent (the test's
    # transaction never commits, so nothing is sent).
    configure(settings, "http://127.0.0.1:9", kinds={"slack": []})
    alert = breaker_opened("ko")
    assert alert.message == (
        "kis-order: closed → open. KIS 호출이 계속 실패해 서킷이 열렸습니다. 이 키로는 KIS에 "
        "아무것도 보내지 않으며, 주문의도는 그대로 대기하다가 서킷이 닫히면 순서대로 나갑니다."
    )
    [row] = Notification.objects.filter(alert=alert)
    head, body = row.text.split("\n", 1)
    assert head == "[Aegis 긴급] KIS 서킷 브레이커 kis-order: open"
    assert body == alert.message

    english = breaker_opened("en")  # a process that runs in English writes English
    assert "KIS calls keep failing: the circuit is open." in english.message
    [row] = Notification.objects.filter(alert=english)
    assert row.text.startswith("[Aegis CRITICAL] KIS circuit breaker kis-order: open\n")


def test_the_alert_history_in_korean(admin_client):
    breaker_opened("ko")
    in_korean(admin_client)
    html = admin_client.get(reverse("admin:execution_alert_changelist")).content.decode()
    assert '<html lang="ko"' in html
    # The app, the list's title, its columns and its filters, and the alert itself.
    for korean in (
        "주문 집행",
        "시스템 알림",
        "생성 시각",
        "심각도",
        "종류",
        "대상",
        "메시지",
        "발송 결과",
        "긴급",
        "KIS 서킷 브레이커",
        "KIS 호출이 계속 실패해 서킷이 열렸습니다.",
    ):
        assert korean in html, korean
    for english in ("Severity", "Deliveries", "KIS circuit breaker", "Critical"):
        assert english not in html, english


def test_a_refused_flatten_says_why_in_korean(admin_client, new_symbol):
    position = open_position(new_symbol(), 10)
    services.exit_intent_open(
        position_id=position.pk,
        qty=10,
        intent_type=IntentType.EXIT_STOP_LOSS,
        idempotency_key=key(),
    )  # every share locked by the stop's intent
    in_korean(admin_client)
    url = reverse("admin:execution_position_changelist")
    listed = admin_client.get(url).content.decode()
    for korean in ("보유종목", "예약수량", "매도가능수량", "평균단가(원)", "전량 청산"):
        assert korean in listed, korean
    response = admin_client.post(
        url, {"action": "flatten", "_selected_action": [position.pk], "confirm": "yes"}, follow=True
    )
    [said] = [str(m) for m in response.context["messages"]]
    assert said.startswith(f"{position.symbol}: 보유종목 {position.pk}: ")
    assert said.endswith(
        "주를 요청했지만 매도가능수량이 0입니다(보유 10주, 미체결 매도 주문과 청산 주문의도에 "
        "예약 10주). 해당 주문이 체결되기를 기다리거나 먼저 취소하세요."
    )


def test_a_refusal_keeps_its_english_for_the_logs():
    refused = InsufficientAvailableQty(position_id=7, requested=5, qty=10, locked=10)
    with translation.override("ko"):
        assert str(refused).startswith("Position 7: 5 requested but 0 available (qty 10,")
        assert refused.translated().startswith("보유종목 7: 5주를 요청했지만 매도가능수량이 0")


def test_a_fill_notice_reads_in_korean():
    with translation.override("ko"):
        text = texts.fill(
            symbol="005930",
            side=Side.SELL,
            qty=10,
            price=9_500,
            amount=95_000,
            at=dt.datetime(2026, 11, 24, 1, 30, 5, tzinfo=dt.UTC),
            intent_type=IntentType.EXIT_STOP_LOSS,
            reason="9,500 ≤ 9,600 (cost 10,000 − 4%)",
            order_filled=10,
            order_qty=20,
            net_pnl=Decimal(-5203),
        )
    assert text.splitlines() == [
        "체결 005930: 10주 매도, 9,500원",
        "95,000원 · 청산, 손절: 9,500 ≤ 9,600 (cost 10,000 − 4%) · 비용 차감 후 실현손익 "
        "−5,203원 · 주문 20주 중 10주 체결 · 한국시간 10:30:05",
    ]
