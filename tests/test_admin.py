"""The admin as its users work in it: positions with their locked and available qty, flatten and
cancel through the ledger, exit profiles validated, the trading state as the kill switch.
"""

import pytest
from django.contrib import admin
from django.urls import reverse

from execution import services
from execution.models import IntentType, OrderIntent, Position, TradingState
from tests.support.ledger import key, open_position, submit
from trading.models import ExitProfile, TakeProfitTier

pytestmark = pytest.mark.django_db


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_every_admin_page_loads(admin_client, new_symbol):
    open_position(new_symbol(), 10)
    for model in admin.site._registry:
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url


def test_position_list_and_page_show_locked_and_available(admin_client, new_symbol):
    position = open_position(new_symbol(), 100)
    intent = services.exit_intent_open(
        position_id=position.pk,
        qty=30,
        intent_type=IntentType.EXIT_TAKE_PROFIT,
        idempotency_key=key(),
    )
    submit(
        services.exit_intent_open(
            position_id=position.pk,
            qty=20,
            intent_type=IntentType.EXIT_STOP_LOSS,
            idempotency_key=key(),
        )
    )
    changelist = admin_client.get(reverse("admin:execution_position_changelist"))
    row = next(r for r in changelist.context["cl"].result_list if r.pk == position.pk)
    assert (row.reserved_qty, row.available_qty) == (50, 50)
    html = changelist.content.decode().lower()
    assert "locked qty" in html and "available qty" in html

    page = admin_client.get(reverse("admin:execution_position_change", args=[position.pk]))
    html = page.content.decode()
    assert "Intents waiting for an order" in html and str(intent.pk) in html
    assert "Open orders" in html and "SUBMITTED" in html


def test_flatten_action_goes_through_the_ledger(admin_client, new_symbol):
    position = open_position(new_symbol(), 40)
    services.exit_intent_open(
        position_id=position.pk,
        qty=15,
        intent_type=IntentType.EXIT_STOP_LOSS,
        idempotency_key=key(),
    )
    url = reverse("admin:execution_position_changelist")
    page = admin_client.get(reverse("admin:execution_position_change", args=[position.pk]))
    assert 'value="flatten"' in page.content.decode()  # the position's own page offers it
    data = {"action": "flatten", "_selected_action": [position.pk]}
    asked = admin_client.post(url, data)
    assert (
        "Yes, flatten" in asked.content.decode() and "25 of 40 available" in asked.content.decode()
    )
    assert not OrderIntent.objects.filter(
        position=position, intent_type=IntentType.FLATTEN
    ).exists()
    data["confirm"] = "yes"
    response = admin_client.post(url, data, follow=True)
    flatten = OrderIntent.objects.get(position=position, intent_type=IntentType.FLATTEN)
    assert flatten.qty == 25 and flatten.reason.startswith("flatten requested by admin")
    assert any("1 flatten intent" in m for m in messages_of(response))

    response = admin_client.post(url, data, follow=True)  # nothing left: refused, not duplicated
    assert (
        OrderIntent.objects.filter(position=position, intent_type=IntentType.FLATTEN).count() == 1
    )
    assert any("0 available" in m for m in messages_of(response))


def test_flatten_says_so_of_a_closed_position(admin_client, new_symbol):
    position = open_position(new_symbol(), 10)
    Position.objects.filter(pk=position.pk).update(status=Position.Status.CLOSED, qty=0)
    response = admin_client.post(
        reverse("admin:execution_position_changelist"),
        {"action": "flatten", "_selected_action": [position.pk], "confirm": "yes"},
        follow=True,
    )
    assert any(f"Closed, nothing to sell: {position.symbol}" in m for m in messages_of(response))
    assert not OrderIntent.objects.filter(
        position=position, intent_type=IntentType.FLATTEN
    ).exists()


def test_cancel_action_releases_the_intent(admin_client, new_symbol):
    position = open_position(new_symbol(), 10)
    intent = services.exit_intent_open(
        position_id=position.pk, qty=10, intent_type=IntentType.EXIT_TIME, idempotency_key=key()
    )
    admin_client.post(
        reverse("admin:execution_orderintent_changelist"),
        {"action": "cancel", "_selected_action": [intent.pk]},
        follow=True,
    )
    intent.refresh_from_db()
    position.refresh_from_db()
    assert intent.status == OrderIntent.Status.CANCELLED
    assert position.available_qty == 10


def test_ledger_rows_cannot_be_edited_in_the_admin(admin_client, new_symbol):
    position = open_position(new_symbol(), 10)
    url = reverse("admin:execution_position_change", args=[position.pk])
    admin_client.post(url, {"qty": 999, "reserved_qty": 0})
    position.refresh_from_db()
    assert position.qty == 10
    assert admin_client.get(reverse("admin:execution_order_add")).status_code == 403


PROFILE = {
    "name": "day-1",
    "description": "",
    "stop_loss_pct": "3",
    "gap_down_pct": "5",
    "trailing_activation_pct": "",
    "trailing_pct": "",
    "day_trade": "",
    "time_exit_at": "",
    "max_holding_days": "",
    "vi_action": "AUCTION",
    "tiers-TOTAL_FORMS": "2",
    "tiers-INITIAL_FORMS": "0",
    "tiers-MIN_NUM_FORMS": "0",
    "tiers-MAX_NUM_FORMS": "1000",
    "tiers-0-gain_pct": "5",
    "tiers-0-sell_pct": "50",
    "tiers-1-gain_pct": "10",
    "tiers-1-sell_pct": "50",
}


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"stop_loss_pct": "45"}, "stop_loss_pct"),
        ({"stop_loss_pct": "-1"}, "stop_loss_pct"),
        ({"trailing_pct": "2"}, "trailing_activation_pct"),
        ({"day_trade": "on"}, "time_exit_at"),
        ({"time_exit_at": "16:00"}, "time_exit_at"),
        ({"max_holding_days": "0"}, "max_holding_days"),
        ({"gap_down_pct": "abc"}, "gap_down_pct"),
        ({"vi_action": "PANIC"}, "vi_action"),
        ({"tiers-1-sell_pct": "60"}, None),  # tiers sell 110 % in all
        ({"tiers-1-gain_pct": "5"}, None),  # two tiers at the same gain
    ],
)
def test_exit_profile_form_errors_save_nothing(admin_client, changes, field):
    response = admin_client.post(reverse("admin:trading_exitprofile_add"), PROFILE | changes)
    assert response.status_code == 200  # the form again, with its errors
    assert not ExitProfile.objects.filter(name="day-1").exists()
    if field:
        assert field in response.context["adminform"].form.errors
    else:
        formset = response.context["inline_admin_formsets"][0].formset
        assert formset.non_form_errors() or any(formset.errors)


def test_valid_exit_profile_is_saved_with_tiers(admin_client):
    response = admin_client.post(
        reverse("admin:trading_exitprofile_add"),
        PROFILE | {"trailing_activation_pct": "4", "trailing_pct": "2"},
    )
    assert response.status_code == 302
    profile = ExitProfile.objects.get(name="day-1")
    assert list(
        TakeProfitTier.objects.filter(profile=profile).values_list("sell_pct", flat=True)
    ) == [50, 50]


def test_trading_state_is_changed_through_the_service(admin_client):
    url = reverse("admin:execution_tradingstate_change", args=[1])
    response = admin_client.post(url, {"state": "HALTED", "reason": ""})
    assert response.status_code == 200 and "reason" in response.context["adminform"].form.errors
    assert TradingState.objects.get().state == "ACTIVE"
    admin_client.post(url, {"state": "HALTED", "reason": "broker maintenance"})
    row = TradingState.objects.get()
    assert (row.state, row.reason, row.changed_by) == ("HALTED", "broker maintenance", "admin")


def test_an_exit_state_cannot_be_deleted_in_the_admin(admin_client, new_symbol):
    """Deleting it would turn the position's exits off without a word."""
    from trading.models import PositionExitState

    profile = ExitProfile.objects.create(name="keep", stop_loss_pct=3)
    position = open_position(new_symbol(), 10, 70_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    url = reverse("admin:trading_positionexitstate_delete", args=[position.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert PositionExitState.objects.filter(position=position).exists()


def test_the_pick_source_form_shows_the_hmac_help_whole(admin_client):
    page = admin_client.get(reverse("admin:picks_picksource_add")).content.decode()
    assert "AEGIS_PICKS_HMAC_3001" in page and "<CODE>" not in page


def test_a_positions_page_tells_its_story_in_krw(admin_client, new_symbol):
    position = open_position(new_symbol(), 10, 70_000)
    exit_ = services.exit_intent_open(
        position_id=position.pk,
        qty=10,
        limit_price=72_000,
        intent_type="EXIT_TAKE_PROFIT",
        idempotency_key=key(),
        reason="gain 2.86% reached tier +2% (cost 70,000)",
    )
    order = submit(exit_)
    services.fill_apply(order_id=order.pk, broker_fill_key=key(), qty=10, price=72_000)
    page = admin_client.get(
        reverse("admin:execution_position_change", args=[position.pk])
    ).content.decode()
    assert "gain 2.86% reached tier +2% (cost 70,000)" in page  # the exit's reason
    assert "10 @ 72,000" in page and order.broker_order_no in page  # its order and fill
    assert "EXIT_TAKE_PROFIT" in page and "ENTRY" in page
    listed = admin_client.get(reverse("admin:execution_position_changelist"), {"status": "CLOSED"})
    text = listed.content.decode()
    assert "70,000" in text and "20,000" in text and "70000.0000" not in text


def test_a_positions_exits_are_paused_and_resumed_after_a_confirmation(admin_client, new_symbol):
    from trading.models import PositionExitState

    profile = ExitProfile.objects.create(name="pausable", stop_loss_pct=3)
    position = open_position(new_symbol(), 10, 70_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    url = reverse("admin:trading_positionexitstate_changelist")
    asked = admin_client.post(url, {"action": "pause", "_selected_action": [position.pk]})
    assert asked.status_code == 200 and "청산 일시 중지" in asked.content.decode()
    assert PositionExitState.objects.get(position=position).paused_at is None  # asked only
    confirmed = {"action": "pause", "_selected_action": [position.pk], "confirm": "yes"}
    admin_client.post(url, confirmed)
    state = PositionExitState.objects.get(position=position)
    assert state.paused_at is not None and state.paused_by == "admin"
    admin_client.post(url, confirmed | {"action": "resume"})
    assert PositionExitState.objects.get(position=position).paused_at is None
