"""Pick sources and gate settings as operators manage them: the admin (token issue, forms run
the model's validators, one gate-settings row) and `manage.py picks_source`."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from picks.models import GateSettings, Pick, PickSource
from picks.services import token_digest
from tests.support.picks import a_pick, post

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_admin_issues_a_new_token_shown_once_and_stores_only_its_hash(
    admin_client, make_source
):
    source, old = make_source()
    asked = admin_client.post(
        "/admin/picks/picksource/", {"action": "issue_token", "_selected_action": [source.pk]}
    )
    assert asked.status_code == 200 and "confirm" in asked.content.decode()
    assert PickSource.objects.get(pk=source.pk).token_sha256 == token_digest(old)
    answer = admin_client.post(
        "/admin/picks/picksource/",
        {"action": "issue_token", "_selected_action": [source.pk], "confirm": "yes"},
        follow=True,
    )
    assert answer.status_code == 200
    [message] = [m for m in messages_of(answer) if source.code in m]
    token = message.rsplit(": ", 1)[1]
    source.refresh_from_db()
    assert source.token_sha256 == token_digest(token) and token not in source.token_sha256
    assert post(Client(), old, [a_pick(source)]).status_code == 401
    assert post(Client(), token, [a_pick(source)]).status_code == 202
    page = admin_client.get(f"/admin/picks/picksource/{source.pk}/change/").content.decode()
    assert token not in page and source.token_sha256 not in page


def test_a_view_only_user_cannot_issue_a_token(client, make_source):
    from django.contrib.auth.models import Permission, User

    source, old = make_source()
    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_picksource"))
    client.force_login(viewer)
    assert client.get("/admin/picks/picksource/").status_code == 200  # may look
    for form in ({}, {"confirm": "yes"}):
        answer = client.post(
            "/admin/picks/picksource/",
            {"action": "issue_token", "_selected_action": [source.pk]} | form,
            follow=True,
        )
        page = answer.content.decode()
        assert answer.status_code in (200, 403) and "shown only this once" not in page
        assert "confirm" not in page or answer.status_code == 403
    assert PickSource.objects.get(pk=source.pk).token_sha256 == token_digest(old)


def test_the_source_form_validates_its_rate_and_keeps_its_code(admin_client, make_source):
    source, _ = make_source()
    url = f"/admin/picks/picksource/{source.pk}/change/"
    form = {"name": "x", "active": "on", "rate_limit": "very fast", "exit_profile": ""}
    form["entry_venue"] = "LSE"  # not a venue: a form error too
    answer = admin_client.post(url, form)
    assert "entry_venue" in answer.context["adminform"].form.errors
    form["entry_venue"] = "SOR"
    answer = admin_client.post(url, form)
    assert answer.status_code == 200
    assert "rate_limit" in answer.context["adminform"].form.errors
    assert PickSource.objects.get(pk=source.pk).rate_limit == "100000/second"
    answer = admin_client.post(url, form | {"rate_limit": "20 per minute", "code": "renamed"})
    assert answer.status_code == 302
    source.refresh_from_db()
    assert (source.rate_limit, source.code, source.entry_venue) == (
        "20 per minute",
        source.code,
        "SOR",
    )


def test_gate_settings_are_one_row_never_deleted_and_validated(admin_client):
    GateSettings.current()
    assert admin_client.get("/admin/picks/gatesettings/add/").status_code == 403
    assert admin_client.get("/admin/picks/gatesettings/1/delete/").status_code == 403
    form = {
        f.name: getattr(GateSettings.current(), f.name)
        for f in GateSettings._meta.fields
        if f.editable and f.name != "id"
    }
    form["entry_cutoff"] = "15:15"
    bad = form | {"max_spread_pct": "31", "max_pick_age_s": "0", "daily_loss_limit_krw": "-1"}
    answer = admin_client.post("/admin/picks/gatesettings/1/change/", bad)
    assert answer.status_code == 200  # the form again, with its errors
    errors = answer.context["adminform"].form.errors
    assert {"max_spread_pct", "max_pick_age_s", "daily_loss_limit_krw"} <= set(errors)
    assert GateSettings.current().max_spread_pct != 31
    answer = admin_client.post(
        "/admin/picks/gatesettings/1/change/", form | {"max_spread_pct": "1.5"}
    )
    assert answer.status_code == 302
    assert str(GateSettings.current().max_spread_pct) == "1.50"


def test_picks_are_read_only_in_the_admin(admin_client, client, make_source):
    source, token = make_source()
    [pick_id] = post(client, token, [a_pick(source)]).json()["ids"]
    listing = admin_client.get("/admin/picks/pick/")
    assert listing.status_code == 200 and "ext-1" in listing.content.decode()
    assert admin_client.get("/admin/picks/pick/add/").status_code == 403
    assert admin_client.get(f"/admin/picks/pick/{pick_id}/delete/").status_code == 403
    admin_client.post(f"/admin/picks/pick/{pick_id}/change/", {"symbol": "000660"})
    assert Pick.objects.get(pk=pick_id).symbol == "005930"


def test_the_command_creates_a_source_and_rotates_its_token(client):
    from trading.models import ExitProfile

    ExitProfile.objects.create(name="cmd-profile", stop_loss_pct=3)
    out = io.StringIO()
    call_command(
        "picks_source",
        "cmd1",
        "--name",
        "News",
        "--profile",
        "cmd-profile",
        "--rate",
        "50/second",
        "--hmac",
        stdout=out,
    )
    assert "source cmd1 created" in out.getvalue()
    token = out.getvalue().split("keep it secret): ")[1].strip()
    source = PickSource.objects.get(code="cmd1")
    assert (source.name, source.rate_limit, source.exit_profile.name, source.require_hmac) == (
        "News",
        "50/second",
        "cmd-profile",
        True,
    )
    assert source.token_sha256 == token_digest(token)
    out = io.StringIO()
    call_command("picks_source", "cmd1", "--no-hmac", stdout=out)  # updated, same token
    assert "updated" in out.getvalue() and "token" not in out.getvalue()
    assert post(client, token, [a_pick(source)]).status_code == 202
    out = io.StringIO()
    call_command("picks_source", "cmd1", "--rotate", stdout=out)
    new = out.getvalue().split("keep it secret): ")[1].strip()
    assert new != token
    assert post(client, token, [a_pick(source, 2)]).status_code == 401
    assert post(client, new, [a_pick(source, 2)]).status_code == 202


@pytest.mark.parametrize(
    "args, message",
    [
        (["cmd2", "--rate", "lots"], "rate_limit"),
        (["cmd2", "--profile", "nope"], "exit profile"),
        (["bad code!"], "code"),
    ],
)
def test_the_command_refuses_bad_input_and_saves_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("picks_source", *args, stdout=io.StringIO())
    assert not PickSource.objects.filter(code=args[0]).exists()


def test_a_manual_buy_is_a_pick_through_the_same_gates(
    admin_client, make_source, broker, trading_hours
):
    from execution.models import OrderIntent
    from picks import routing
    from picks.models import Pick
    from trading.models import ExitProfile

    source, _ = make_source()
    source.exit_profile = ExitProfile.objects.create(name="desk", stop_loss_pct=3)
    source.save()
    listed = admin_client.get("/admin/picks/pick/").content.decode()
    assert "/admin/picks/pick/manual-buy/" in listed
    url = "/admin/picks/pick/manual-buy/"
    bad = admin_client.post(url, {"source": source.pk, "symbol": "12345", "qty": "10"})
    assert bad.status_code == 200 and "symbol" in bad.context["form"].errors
    both = admin_client.post(
        url, {"source": source.pk, "symbol": "005930", "qty": "10", "budget_krw": "1000000"}
    )
    assert both.status_code == 200 and both.context["form"].errors  # qty or budget, not both
    assert not Pick.objects.exists()
    done = admin_client.post(url, {"source": source.pk, "symbol": "005930", "qty": "10"})
    [pick] = Pick.objects.all()
    assert done.status_code == 302 and done["Location"].endswith(f"/{pick.pk}/change/")
    assert (pick.source, pick.side, pick.qty, pick.symbol) == (source, "BUY", 10, "005930")
    assert pick.external_id.startswith("desk:admin:")
    # The router takes it as any pick: here its gates let it through to an entry.
    assert routing.pick_route(pick.pk, routed_by="EVENT", broker=broker) == "routed"
    pick.refresh_from_db()
    [entry] = OrderIntent.objects.filter(symbol="005930", intent_type="ENTRY")
    assert (pick.status, pick.intent_id, entry.qty) == ("ROUTED", entry.pk, 10)
