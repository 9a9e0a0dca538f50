"""POST /api/picks/ingest on PostgreSQL and Redis: a whole batch or nothing, idempotent,
authenticated per source, bounded in size and rate."""

import datetime as dt
import hashlib
import hmac
import io
import json
import threading

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client

from aegis import clock
from picks.models import GateSettings, Pick, PickSource
from tests.picks.conftest import a_pick, post

pytestmark = pytest.mark.django_db


def picks_queue_length() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).llen("picks")


def test_a_batch_is_stored_and_sent_to_the_router_once_committed(
        client, make_source, django_capture_on_commit_callbacks):
    source, token = make_source()
    body = [a_pick(source, 1), a_pick(source, 2, qty=10, budget_krw=None, side="SELL")]
    before = picks_queue_length()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = post(client, token, body)
        assert picks_queue_length() == before  # nothing enqueued before the commit
    assert answer.status_code == 202, answer.content
    data = answer.json()
    stored = {p.external_id: p for p in Pick.objects.filter(source=source)}
    assert data == {"status": "queued", "ids": [stored["ext-1"].pk, stored["ext-2"].pk],
                    "duplicates": 0}
    assert (stored["ext-1"].budget_krw, stored["ext-1"].qty) == (1_000_000, None)
    assert (stored["ext-2"].side, stored["ext-2"].qty) == ("SELL", 10)
    assert all(p.status == "NEW" for p in stored.values())
    for callback in callbacks:
        callback()
    assert picks_queue_length() == before + 1  # one route task for the batch


@pytest.mark.parametrize("overrides, field", [
    ({"symbol": "5930"}, "symbol"),
    ({"symbol": "00593a"}, "symbol"),
    ({"qty": 0, "budget_krw": None}, "qty"),
    ({"qty": -3, "budget_krw": None}, "qty"),
    ({"qty": 10}, "qty"),  # both qty and budget
    ({"budget_krw": None}, "qty"),  # neither
    ({"budget_krw": 9_999}, "budget_krw"),
    ({"budget_krw": 100_000_001}, "budget_krw"),
    ({"side": "SHORT"}, "side"),
    ({"limit_price": 0}, "limit_price"),
    ({"generated_at": "yesterday"}, "generated_at"),
    ({"external_id": ...}, "external_id"),
    ({"external_id": "x" * 129}, "external_id"),
    ({"qty": True, "budget_krw": None}, "qty"),
])
def test_one_bad_pick_refuses_the_whole_batch_with_its_field_errors(client, make_source,
                                                                     overrides, field):
    source, token = make_source()
    answer = post(client, token, [a_pick(source, 1), a_pick(source, 2, **overrides)])
    assert answer.status_code == 400, answer.content
    assert list(answer.json()["errors"]) == ["1"], answer.json()
    assert field in answer.json()["errors"]["1"]
    assert not Pick.objects.filter(source=source).exists()


def test_a_pick_from_the_future_is_refused(client, make_source):
    source, token = make_source()
    later = (clock.now() + dt.timedelta(minutes=1)).isoformat()
    answer = post(client, token, [a_pick(source, generated_at=later)])
    assert answer.status_code == 400
    assert "generated_at" in answer.json()["errors"]["0"]


@pytest.mark.parametrize("body", [[], {}, {"picks": []}, "null", "[1, 2]", b"{not json"])
def test_a_body_that_is_not_a_list_of_picks_is_a_400(client, make_source, body):
    source, token = make_source()
    answer = post(client, token, body)
    assert answer.status_code == 400
    assert not Pick.objects.filter(source=source).exists()


def test_without_a_valid_token_it_is_401(client, make_source):
    source, token = make_source()
    for answer in (post(client, None, [a_pick(source)]),
                   post(client, token + "x", [a_pick(source)]),
                   post(client, None, [a_pick(source)], HTTP_AUTHORIZATION="Token abc"),
                   post(client, None, [a_pick(source)], HTTP_AUTHORIZATION="Bearer")):
        assert answer.status_code == 401
        assert answer["WWW-Authenticate"].startswith("Bearer")
        assert token not in answer.content.decode()
    assert not Pick.objects.filter(source=source).exists()


def test_an_inactive_source_and_another_sources_pick_are_403(client, make_source):
    source, token = make_source()
    other, _ = make_source()
    assert post(client, token, [a_pick(source, 1), a_pick(other, 2)]).status_code == 403
    PickSource.objects.filter(pk=source.pk).update(active=False)
    assert post(client, token, [a_pick(source)]).status_code == 403
    assert not Pick.objects.filter(source__in=[source, other]).exists()


def test_a_source_that_requires_it_must_sign_the_body(client, make_source, monkeypatch):
    source, token = make_source(require_hmac=True)
    body = json.dumps([a_pick(source)]).encode()
    assert post(client, token, body).status_code == 403  # no secret configured here
    secret = "s3cret-for-the-test"
    monkeypatch.setenv(f"AEGIS_PICKS_HMAC_{source.code.upper().replace('-', '_')}", secret)
    good = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert post(client, token, body).status_code == 401
    bad = post(client, token, body, HTTP_X_AEGIS_SIGNATURE="sha256=" + "0" * 64)
    assert bad.status_code == 401 and secret not in bad.content.decode()
    assert not Pick.objects.filter(source=source).exists()
    assert post(client, token, body, HTTP_X_AEGIS_SIGNATURE=f"sha256={good}").status_code == 202
    assert Pick.objects.filter(source=source).count() == 1


def test_too_large_is_413_and_stores_nothing(client, make_source, settings):
    source, token = make_source()
    settings.PICKS_MAX_BATCH = 3
    answer = post(client, token, [a_pick(source, n) for n in range(4)])
    assert answer.status_code == 413
    settings.PICKS_MAX_BODY_BYTES = 200
    answer = post(client, token, [a_pick(source, 1), a_pick(source, 2)])
    assert answer.status_code == 413
    assert not Pick.objects.filter(source=source).exists()


def test_over_its_rate_a_source_gets_429_with_retry_after(client, make_source):
    source, token = make_source(rate_limit="3/minute")
    assert post(client, token, [a_pick(source, 1), a_pick(source, 2)]).status_code == 202
    answer = post(client, token, [a_pick(source, 3), a_pick(source, 4)])  # 4 picks > 3
    assert answer.status_code == 429
    assert 1 <= int(answer["Retry-After"]) <= 60
    assert Pick.objects.filter(source=source).count() == 2
    assert post(client, token, [a_pick(source, 3)]).status_code == 202  # still within 3


def test_a_repeated_pick_stores_nothing_new_and_answers_its_first_id(client, make_source):
    source, token = make_source()
    first = post(client, token, [a_pick(source, 1)]).json()["ids"][0]
    again = post(client, token, [a_pick(source, 1, symbol="000660"), a_pick(source, 2),
                                 a_pick(source, 2)]).json()
    assert again["ids"][0] == first and again["ids"][1] == again["ids"][2]
    assert again["duplicates"] == 2
    assert Pick.objects.filter(source=source).count() == 2
    assert Pick.objects.get(pk=first).symbol == "005930"  # the first version stands


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingests_of_one_pick_store_it_once(make_source):
    source, token = make_source()
    body = json.dumps([a_pick(source, 1)])
    answers, barrier = [], threading.Barrier(8)

    def send():
        barrier.wait()
        try:
            answers.append(post(Client(), token, body))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 8
    assert len({a.json()["ids"][0] for a in answers}) == 1
    assert Pick.objects.filter(source=source).count() == 1


def test_the_schema_and_its_docs_page_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/picks/ingest" in text and "sourceToken" in text and "'413'" in text
    assert client.get("/api/docs/").status_code == 200


def test_the_command_creates_a_source_and_rotates_its_token(client, db):
    from trading.models import ExitProfile

    ExitProfile.objects.create(name="cmd-profile", stop_loss_pct=3)
    out = io.StringIO()
    call_command("picks_source", "cmd1", "--name", "News", "--profile", "cmd-profile",
                 "--rate", "50/second", stdout=out)
    token = out.getvalue().split("keep it secret): ")[1].strip()
    source = PickSource.objects.get(code="cmd1")
    assert (source.name, source.rate_limit, source.exit_profile.name) == (
        "News", "50/second", "cmd-profile")
    assert token not in source.token_sha256
    assert post(client, token, [a_pick(source)]).status_code == 202
    out = io.StringIO()
    call_command("picks_source", "cmd1", "--rotate", stdout=out)
    assert post(client, token, [a_pick(source, 2)]).status_code == 401
    with pytest.raises(CommandError, match="rate_limit"):
        call_command("picks_source", "cmd1", "--rate", "lots")
    with pytest.raises(CommandError, match="exit profile"):
        call_command("picks_source", "cmd1", "--profile", "nope")


def test_the_admin_issues_tokens_and_refuses_bad_gate_settings(admin_client, make_source):
    source, old = make_source()
    answer = admin_client.post("/admin/picks/picksource/", {
        "action": "issue_token", "_selected_action": [source.pk]}, follow=True)
    assert answer.status_code == 200
    assert post(Client(), old, [a_pick(source)]).status_code == 401
    GateSettings.current()
    form = {f.name: getattr(GateSettings.current(), f.name)
            for f in GateSettings._meta.fields if f.editable and f.name != "id"}
    form["max_spread_pct"] = "31"
    form["entry_cutoff"] = "15:15"
    answer = admin_client.post("/admin/picks/gatesettings/1/change/", form)
    assert answer.status_code == 200  # the form again, with its error
    assert "max_spread_pct" in answer.context["adminform"].form.errors
    assert GateSettings.current().max_spread_pct != 31
