"""The picks API's OpenAPI schema is its contract: a client that sends what the schema describes
is never refused, and what it rules out is never taken. Schemathesis loads the schema the app
serves (/api/schema/) and sends requests drawn from it through the app's WSGI handler: positive
data (the schema's examples, its boundaries, then random batches), each to be stored, 202, and
answered as the schema says; then negative data (a value of another type or outside its bounds,
a required field left out, a header in another shape), each to be refused with a 4xx and
stored nowhere. Every example in the schema is sent as well.

Two values of a request belong to the credentials and the moment rather than to the schema:
each pick's `source` must be the token's own source (the schema says so, and gives the codes'
pattern), and `generated_at` must not lie ahead of the server's clock (the schema bounds it to
the years 2000 to 2099). So every pick drawn names the source whose token is sent, and the
server's clock stands after the last moment the schema allows.

Deterministic (a fixed seed, derandomized) and bounded (about 300 requests, several seconds)."""

import datetime as dt
import re

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction

from core import clock
from picks.models import SOURCE_CODE_PATTERN, Pick, PickSource
from picks.services import source_token_issue
from tests.support.picks import post

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/?format=json"
PATH = "/api/picks/ingest"
AFTER_THE_SCHEMA = dt.datetime(2100, 1, 2, tzinfo=dt.UTC)  # after 2099-12-31T23:59:59-23:59


def drawn(mode: str, checks: dict):
    """The ingest operation, its requests drawn in `mode`, answers judged by `checks`."""
    return schemathesis.openapi.from_wsgi(
        SCHEMA_URL,
        WSGIHandler(),
        config=schemathesis.Config.from_dict(
            {
                "seed": 20261124,
                "generation": {"mode": mode, "max-examples": 100, "deterministic": True},
                "phases": {
                    "stateful": {"enabled": False},
                    "fuzzing": {"error-feedback": {"enabled": False}},
                },
                # Values drawn from the schema alone, not from the app's source.
                "analysis": {"constants": {"enabled": False}},
                "checks": {"enabled": False}
                | {name: {"enabled": True} | c for name, c in checks.items()},
            }
        ),
    ).include(path=PATH, method="POST")


schema = drawn(
    "positive",
    {
        "positive_data_acceptance": {"expected-statuses": [202]},
        "status_code_conformance": {},
        "content_type_conformance": {},
        "response_schema_conformance": {},
    },
)
# 401: a signature header in another shape; 405: the method drawn is not POST; 413: more
# picks than a batch holds.
refused = drawn(
    "negative",
    {"negative_data_rejection": {"expected-statuses": [400, 401, 405, 413]}},
)


# Hypothesis's own database and timing stay out: the draw is the seed's alone.
DRAWN = hypothesis.settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.filter_too_much,
    ],
)


@pytest.fixture
def in_process_requests():
    """Requests through the WSGI handler in this thread, on the test's connection and inside its
    transaction: without Django's closing of old connections as each request starts and ends,
    which Django's own test client leaves out too."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def after_the_schema():
    with clock.installed(clock.FixedClock(AFTER_THE_SCHEMA)):
        yield


@pytest.fixture
def routers_keep_up(settings):
    """Room in the routers' backlog for the largest batch whatever else waits (a full batch
    is refused, 503, once more than PICKS_QUEUE_MAX - PICKS_MAX_BATCH picks wait): the
    server's load, not the request, decides that answer."""
    settings.PICKS_QUEUE_MAX = 100 * settings.PICKS_MAX_BATCH


@schema.parametrize()
@DRAWN
def test_every_request_the_schema_describes_is_accepted(
    case, source, in_process_requests, after_the_schema, routers_keep_up
):
    src, token = source
    for pick in case.body:
        pick["source"] = src.code
    # Each request on its own: what one stores stays out of the next one's way.
    with transaction.atomic():
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
        transaction.set_rollback(True)


@refused.parametrize()
@DRAWN
def test_no_request_the_schema_rules_out_is_taken(
    case, source, in_process_requests, after_the_schema, routers_keep_up
):
    src, token = source
    # The token's own source wherever the pick names one the schema allows: a pick is then
    # refused for what the schema rules out in it, not for naming another source.
    for pick in case.body if isinstance(case.body, list) else []:
        if isinstance(pick, dict) and re.fullmatch(SOURCE_CODE_PATTERN, str(pick.get("source"))):
            pick["source"] = src.code
    with transaction.atomic():
        answer = case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
        # Refused, nothing of the batch stored (what schemathesis let by, e.g. one more
        # header, was no violation).
        if answer.status_code >= 400:
            assert not Pick.objects.filter(source=src).exists(), case.body
        transaction.set_rollback(True)


def sources_named(value) -> set[str]:
    """The `source` of every pick in an example, however deep it lies."""
    if isinstance(value, list):
        return set().union(*map(sources_named, value))
    if isinstance(value, dict):
        own = {value["source"]} if isinstance(value.get("source"), str) else set()
        return own.union(*map(sources_named, value.values()))
    return set()


def test_every_example_in_the_schema_is_accepted(client):
    operation = client.get(SCHEMA_URL).json()["paths"][PATH]["post"]
    examples = operation["requestBody"]["content"]["application/json"].get("examples", {})
    assert examples, "the schema shows no request"
    for name, example in examples.items():
        body = example["value"]
        [code] = sources_named(body) or {"3001"}
        known = PickSource.objects.filter(code=code).first()
        token = source_token_issue(source=known or PickSource.objects.create(code=code))
        with transaction.atomic():
            answer = post(client, token, body)
            assert answer.status_code == 202, (name, answer.content)
            assert len(answer.json()["ids"]) == len(body), name
            transaction.set_rollback(True)
