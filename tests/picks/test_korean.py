"""Picks and the exit engine's reasons in Korean: a router running in Korean stores its refusal's
reason in Korean (and the close's summary of refusals is Korean), the pick list speaks Korean to a
person who chose it, and an exit's reason is told in the language of the process deciding it.
The suite itself runs in English (tests/conftest.py): each Korean part is asked for here."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from core.clock import SEOUL
from market.vi import Vi
from picks import notify, routing
from picks.models import Pick
from tests.support.picks import CLOCK, a_pick, ingest, post
from trading.rules import Holding, Rules, Tier, Trade, evaluate


@pytest.fixture(autouse=True)
def no_korean_after():
    """A request in Korean leaves its language active in this thread (LocaleMiddleware never
    deactivates it): the tests after these would decide in Korean."""
    yield
    translation.deactivate()


def route(broker, ids) -> dict:
    return routing.picks_route(pick_ids=ids, routed_by="EVENT", broker=broker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_korean_router_stores_its_refusals_in_korean(broker, source, make_source):
    bare = make_source()  # no exit profile: refused at gate 1, before the broker is asked
    [unwatched] = ingest(bare, a_pick(bare[0]))
    # 60,000 is 18 % under the simulator's 71,000: refused at gate 3, on the market's price
    [far] = ingest(source, a_pick(source[0], 2, limit_price=60_000))
    with translation.override("ko"):
        assert route(broker, [unwatched, far])["rejected"] == 2
        summary = notify.refusals_of_day(CLOCK.now() - dt.timedelta(hours=1), CLOCK.now())
    refused = Pick.objects.get(pk=unwatched)
    assert (refused.rejected_gate, refused.reject_reason) == (
        1,
        "전략에 청산 프로파일이 없습니다: 진입해도 청산을 감시할 수 없습니다",
    )
    refused = Pick.objects.get(pk=far)
    assert refused.rejected_gate == 3
    assert refused.reject_reason == (
        "현재가 71,000이(가) 픽의 가격 60,000 대비 +18.33% 벗어났습니다 (최대 ±2.00%)"
    )
    assert summary == ["거부된 픽: 2건 (게이트 1 유효성: 1건, 게이트 3 가격: 1건)"]


@pytest.mark.django_db
def test_the_pick_list_in_korean_by_a_persons_choice(admin_client, client, make_source):
    source, token = make_source()
    assert post(client, token, [a_pick(source)]).status_code == 202
    switched = admin_client.post(
        reverse("set_language"), {"language": "ko", "next": reverse("admin:picks_pick_changelist")}
    )
    assert switched.status_code == 302
    html = admin_client.get(reverse("admin:picks_pick_changelist")).content.decode()
    assert '<html lang="ko"' in html
    for korean in ("수신 시각", "외부 ID", "거부 게이트", "거부 사유", "처리 경로", "주문의도"):
        assert f">{korean}<" in html, korean  # the columns' headers
    assert "수동 매수" in html and "신규" in html  # the manual buy's link, the pick's status
    assert "Received at" not in html and "Reject reason" not in html


def test_an_exit_reason_is_told_in_the_deciding_process_language():
    holding = Holding(qty=10, available=10, avg_price=Decimal(70_000))
    at = dt.datetime(2026, 11, 24, 10, tzinfo=SEOUL)
    stop = Rules(stop_loss_pct=Decimal(3))
    tiers = Rules(tiers=(Tier(gain_pct=Decimal(2), sell_pct=Decimal(50)),))
    vi = Vi(dt.datetime(2026, 11, 24, 9, 2, 51, tzinfo=SEOUL).timestamp(), 102_000, 110_000)
    assert evaluate(tiers, holding, Trade(price=72_000, at=at)).decision.reason == (
        "gain 2.86% reached tier +2% (cost 70,000)"
    )
    with translation.override("ko"):
        gained = evaluate(tiers, holding, Trade(price=72_000, at=at)).decision
        stopped = evaluate(stop, holding, Trade(price=67_900, at=at)).decision
        described = vi.describe()
    assert gained.reason == "수익률 2.86%, 익절 단계 +2% 도달 (평균단가 70,000)"
    assert stopped.reason == "67,900 ≤ 67,900 (평균단가 70,000 − 3%)"
    assert described == (
        "09:02:51부터 변동성완화장치(VI) 발동 중 (단일가매매, 예상체결가 102,000, "
        "정적 VI 기준가 110,000)"
    )
