"""POST /api/picks/ingest on PostgreSQL and Redis: a whole batch or nothing, idempotent,
authenticated per source, bounded in size and rate."""

import datetime as dt
import hashlib
import hmac
import json

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from core import clock
from picks.auth import source_key
from picks.models import Pick
from picks.services import source_token_issue, token_digest
from tests.support import at_once, child_database_url
from tests.support.picks import a_pick, post

pytestmark = pytest.mark.django_db


def picks_queue_length() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).llen("picks")


def test_a_batch_is_stored_and_sent_to_the_router_once_committed(
    client, make_source, django_capture_on_commit_callbacks
):
    source, token = make_source()
    body = [a_pick(source, 1), a_pick(source, 2, qty=10, budget_krw=None, side="SELL")]
    before = picks_queue_length()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = post(client, token, body)
        assert picks_queue_length() == before  # nothing enqueued before the commit
    assert answer.status_code == 202, answer.content
    data = answer.json()
    stored = {p.external_id: p for p in Pick.objects.filter(source=source)}
    assert data == {
        "status": "queued",
        "ids": [stored["ext-1"].pk, stored["ext-2"].pk],
        "duplicates": 0,
    }
    assert (stored["ext-1"].budget_krw, stored["ext-1"].qty) == (1_000_000, None)
    assert (stored["ext-2"].side, stored["ext-2"].qty) == ("SELL", 10)
    assert all(p.status == "NEW" for p in stored.values())
    for callback in callbacks:
        callback()
    assert picks_queue_length() == before + 1  # one route task for the batch


@pytest.mark.parametrize(
    "overrides, field",
    [
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
        ({"generated_at": "2026-11-24T09:00:00"}, "generated_at"),  # no UTC offset
        ({"generated_at": "9999-12-31T23:59:59-14:00"}, "generated_at"),
        ({"symbol": " 05930"}, "symbol"),
        ({"symbol": "005930\n"}, "symbol"),
        ({"limit_price": 10_000_001}, "limit_price"),
        ({"score": "NaN"}, "score"),
        ({"score": "1e999999999"}, "score"),
        ({"score": "-"}, "score"),
        ({"limit_prce": 70_000}, "limit_prce"),  # unknown fields are refused, not dropped
        ({"source": None}, "source"),
        ({"external_id": "a\x00b"}, "external_id"),  # PostgreSQL text cannot hold NUL
        ({"external_id": "\ud800"}, "external_id"),  # a lone surrogate is not UTF-8
        ({"external_id": ""}, "external_id"),
        ({"external_id": 12345}, "external_id"),  # a number: not taken as its text
        ({"symbol": 5930}, "symbol"),
        ({"source": ""}, "source"),
        ({"source": "30 01"}, "source"),  # no source has such a code: refused by its pattern
    ],
)
def test_one_bad_pick_refuses_the_whole_batch_with_its_field_errors(
    client, make_source, overrides, field
):
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
    for answer in (
        post(client, None, [a_pick(source)]),
        post(client, token + "x", [a_pick(source)]),
        post(client, None, [a_pick(source)], HTTP_AUTHORIZATION="Token abc"),
        post(client, None, [a_pick(source)], HTTP_AUTHORIZATION="Bearer"),
    ):
        assert answer.status_code == 401
        assert answer["WWW-Authenticate"].startswith("Bearer")
        assert token not in answer.content.decode()
    assert not Pick.objects.filter(source=source).exists()


def test_an_inactive_source_and_another_sources_pick_are_403(client, make_source):
    source, token = make_source()
    other, _ = make_source()
    assert post(client, token, [a_pick(source, 1), a_pick(other, 2)]).status_code == 403
    source.active = False  # as the admin saves it; the source was looked up (and kept) above
    source.save()
    assert post(client, token, [a_pick(source)]).status_code == 403
    assert not Pick.objects.filter(source__in=[source, other]).exists()


def test_a_replaced_token_is_refused_at_once(client, make_source):
    source, token = make_source()
    assert post(client, token, [a_pick(source, 1)]).status_code == 202  # the source now kept
    assert cache.get(source_key(token_digest(token))) is not None
    new = source_token_issue(source=source)
    assert post(client, token, [a_pick(source, 2)]).status_code == 401
    assert post(client, new, [a_pick(source, 3)]).status_code == 202


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
    again = post(
        client, token, [a_pick(source, 1, symbol="000660"), a_pick(source, 2), a_pick(source, 2)]
    ).json()
    assert again["ids"][0] == first and again["ids"][1] == again["ids"][2]
    assert again["duplicates"] == 2
    assert Pick.objects.filter(source=source).count() == 2
    assert Pick.objects.get(pk=first).symbol == "005930"  # the first version stands


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingests_of_one_pick_store_it_once(make_source):
    source, token = make_source()
    body = json.dumps([a_pick(source, 1)])
    queued = picks_queue_length()
    answers = at_once(lambda: post(Client(), token, body), [()] * 8)
    assert [a.status_code for a in answers] == [202] * 8
    assert len({a.json()["ids"][0] for a in answers}) == 1
    assert Pick.objects.filter(source=source).count() == 1
    assert sorted(a.json()["duplicates"] for a in answers) == [0] + [1] * 7
    assert picks_queue_length() == queued + 1  # routed once, by the ingest that stored it


@pytest.mark.django_db(transaction=True)
def test_a_known_pick_deleted_while_a_large_batch_is_stored_is_a_409_and_stores_nothing(
    make_source, monkeypatch
):
    """A batch of more than one INSERT runs in one transaction. A pick it met as known (its
    INSERT did nothing) and another connection deletes before the batch reads its id is neither
    stored nor found: the batch is undone whole and the client is told to send it again."""
    import psycopg

    from picks import services

    source, token = make_source()
    [known] = post(Client(), token, [a_pick(source, 0)]).json()["ids"]
    batch = [a_pick(source, n) for n in range(services._INSERT_CHUNK + 100)]  # two INSERTs
    inserted = services._insert_new

    def insert_then_an_operator_deletes(rows):
        stored = inserted(rows)
        if len(rows) > 1:  # the batch's INSERTs are done; the known pick goes, committed
            with psycopg.connect(child_database_url(), autocommit=True) as other:
                other.execute(f"DELETE FROM {Pick._meta.db_table} WHERE id = %s", [known])
        return stored

    monkeypatch.setattr(services, "_insert_new", insert_then_an_operator_deletes)
    answer = post(Client(), token, batch)
    assert answer.status_code == 409, answer.content
    assert "send the batch again" in answer.json()["detail"]
    assert not Pick.objects.filter(source=source).exists()  # the other 599: nothing
    monkeypatch.setattr(services, "_insert_new", inserted)
    again = post(Client(), token, batch)
    assert again.status_code == 202 and again.json()["duplicates"] == 0
    assert Pick.objects.filter(source=source).count() == len(batch)


def test_the_schema_and_its_docs_page_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/picks/ingest" in text and "sourceToken" in text and "'413'" in text
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # Offline too: ReDoc is served from this site (drf-spectacular-sidecar), not from a CDN.
    page = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/redoc/" in page and "cdn." not in page


def test_what_is_not_json_or_nested_too_deep_is_a_400(client, make_source):
    source, token = make_source()
    for body in (b"[" * 200_000, b"\xff\xfe", b'[{"a": NaN}]'):
        answer = post(client, token, body)
        assert answer.status_code == 400, answer.content
        assert "non_field_errors" in answer.json()["errors"]
    assert not Pick.objects.filter(source=source).exists()


def test_the_declared_size_is_refused_before_anything_is_read(client, make_source, settings):
    source, token = make_source()
    settings.PICKS_MAX_BODY_BYTES = 100
    body = json.dumps([a_pick(source)])
    assert post(client, None, body).status_code == 413  # not even authenticated
    settings.PICKS_MAX_BODY_BYTES = 1024 * 1024
    assert post(client, token, body, CONTENT_LENGTH="12x").status_code == 400


def test_a_signature_header_of_any_bytes_is_a_401(client, make_source, monkeypatch):
    source, token = make_source(require_hmac=True)
    monkeypatch.setenv(f"AEGIS_PICKS_HMAC_{source.code.upper().replace('-', '_')}", "k")
    answer = post(client, token, [a_pick(source)], HTTP_X_AEGIS_SIGNATURE="sha256=\xe9\xff")
    assert answer.status_code == 401


def test_a_signature_in_another_shape_is_a_401_whether_or_not_the_source_signs(client, make_source):
    source, token = make_source()  # need not sign
    for sent in ("", "sha256=abc", "sha256=" + "0" * 64 + " ", "md5=" + "0" * 64):
        answer = post(client, token, [a_pick(source)], HTTP_X_AEGIS_SIGNATURE=sent)
        assert answer.status_code == 401 and "64 hex digits" in answer.json()["detail"], sent
    assert not Pick.objects.filter(source=source).exists()


def test_a_batch_larger_than_the_whole_rate_is_413_not_429(client, make_source):
    source, token = make_source(rate_limit="2/hour")
    answer = post(client, token, [a_pick(source, n) for n in range(3)])
    assert answer.status_code == 413
    assert "2/hour" in answer.json()["detail"]


def test_with_the_rate_store_unreachable_batches_are_let_in_and_it_is_logged(
    client, make_source, settings, caplog
):
    # A real client against a closed port: the fail-open policy of picks.auth.require_rate.
    source, token = make_source(rate_limit="1/hour")
    settings.PICKS_RATE_STORAGE_URL = "redis://127.0.0.1:1/0"
    with caplog.at_level("WARNING", logger="aegis.picks"):
        assert post(client, token, [a_pick(source, 1)]).status_code == 202
        assert post(client, token, [a_pick(source, 2)]).status_code == 202
    assert "picks.rate_unavailable" in caplog.text
    assert token not in caplog.text


def test_queries_per_batch_do_not_grow_with_its_size(client, make_source):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    source, token = make_source()
    assert post(client, token, [a_pick(source, 1000)]).status_code == 202  # the source kept
    counts = []
    for first, size in ((0, 1), (100, 200)):
        with CaptureQueriesContext(connection) as queries:
            answer = post(client, token, [a_pick(source, first + n) for n in range(size)])
        assert answer.status_code == 202
        counts.append(len(queries))
    with CaptureQueriesContext(connection) as queries:  # all known: read back, nothing new
        post(client, token, [a_pick(source, 100 + n) for n in range(200)])
    counts.append(len(queries))
    assert counts[0] == counts[1] <= 2, counts  # the insert (and a savepoint in this test)
    assert counts[2] <= counts[1] + 1, counts


def test_the_schema_describes_the_body_the_answers_and_the_token(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    operation = schema["paths"]["/api/picks/ingest"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array" and body["items"]["$ref"].endswith("/PickIn")
    assert (body["minItems"], body["maxItems"]) == (1, settings.PICKS_MAX_BATCH)
    assert {"202", "400", "401", "403", "413", "429"} <= set(operation["responses"])
    assert operation["security"] == [{"sourceToken": []}]
    assert schema["components"]["securitySchemes"]["sourceToken"]["scheme"] == "bearer"
    pick = schema["components"]["schemas"]["PickIn"]
    assert pick["properties"]["budget_krw"]["minimum"] == settings.PICKS_BUDGET_MIN_KRW
    assert pick["properties"]["symbol"]["pattern"]
    assert pick["additionalProperties"] is False
    assert [branch["required"] for branch in pick["oneOf"]] == [["qty"], ["budget_krw"]]


def test_a_broker_outage_at_commit_is_logged_and_the_batch_stays_stored(
    client, make_source, settings, caplog, django_capture_on_commit_callbacks
):
    # The real Celery client against a closed port (no mock): the picks are committed, the
    # answer is still 202, and the failure is logged for the sweep to make up for.
    from aegis.celery import app

    source, token = make_source()
    saved = app.conf.broker_url, app._pool, app.amqp._producer_pool
    app.conf.broker_url, app._pool, app.amqp._producer_pool = "redis://127.0.0.1:1/0", None, None
    try:
        with (
            caplog.at_level("ERROR", logger="aegis.picks"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            answer = post(client, token, [a_pick(source, 1)])
    finally:
        app.conf.broker_url, app._pool, app.amqp._producer_pool = saved
    assert answer.status_code == 202, answer.content
    assert Pick.objects.filter(source=source, status="NEW").count() == 1
    assert "picks.route_enqueue_failed" in caplog.text
