"""A flood of picks on the real stack's Redis: the routers' backlog is bounded (503, nothing
stored, past PICKS_QUEUE_MAX), routers give way to exits while the KIS rate window is short,
and a new source's default rate fits KIS's budget."""

import secrets
import time
from types import SimpleNamespace

import pytest
from django.test import Client

from kis.ratelimit import SharedRateLimiter
from picks import routing
from picks.models import Pick, PickSource
from tests.support.picks import a_pick, post

pytestmark = pytest.mark.django_db


def test_an_ingest_past_the_bounded_backlog_is_refused_with_503_and_stores_nothing(
    settings, make_source
):
    settings.PICKS_QUEUE_MAX = 3
    source, token = make_source()
    # No router runs here: stored picks stay NEW, waiting.
    assert post(Client(), token, [a_pick(source, n) for n in (1, 2)]).status_code == 202
    refused = post(Client(), token, [a_pick(source, n) for n in (3, 4)])
    assert refused.status_code == 503
    assert refused["Retry-After"] == "1"
    body = refused.json()
    assert body["error"] == "busy" and body["retry_after_s"] == 1
    assert "2 picks already wait for a router (at most 3)" in body["detail"]
    assert "nothing of this batch was stored" in body["detail"]
    assert not Pick.objects.filter(source=source, external_id__in=["ext-3", "ext-4"]).exists()
    assert post(Client(), token, [a_pick(source, 3)]).status_code == 202  # room for one


def _broker(per_second: int) -> SimpleNamespace:
    key = secrets.token_hex(6)
    app = SimpleNamespace(fingerprint=key)
    return SimpleNamespace(
        limiter=SharedRateLimiter(per_second=per_second, guard_ms=50),
        config=SimpleNamespace(query_app=app, order_app=app),
    )


def test_routers_give_way_to_exits_while_the_rate_window_is_short(settings):
    settings.PICKS_EXIT_RESERVE_SHARE = 0.25
    settings.PICKS_YIELD_MAX_S = 10
    broker = _broker(per_second=4)  # one slot kept for exits
    key = broker.config.order_app.fingerprint
    assert not routing.exits_short(broker)
    broker.limiter.acquire(key)
    broker.limiter.acquire(key)
    assert broker.limiter.free(key) == 2 and not routing.exits_short(broker)
    broker.limiter.acquire(key)  # an exit, say: one slot left, the exits' own
    assert broker.limiter.free(key) == 1 and routing.exits_short(broker)
    started = time.monotonic()
    routing.exits_first(broker)  # waits for the window to move on
    assert time.monotonic() - started >= 0.5
    assert not routing.exits_short(broker)


def test_a_router_waits_for_exits_at_most_the_yield_limit(settings):
    settings.PICKS_EXIT_RESERVE_SHARE = 0.9  # both slots of 2/s kept: always short
    settings.PICKS_YIELD_MAX_S = 0.3
    broker = _broker(per_second=2)
    started = time.monotonic()
    routing.exits_first(broker)
    assert 0.3 <= time.monotonic() - started < 5


def test_a_new_source_has_a_rate_within_kis_budget(settings):
    assert PickSource().rate_limit == settings.PICKS_DEFAULT_RATE_LIMIT == "5/second"
    settings.PICKS_DEFAULT_RATE_LIMIT = "3/second"
    assert PickSource(code="x").rate_limit == "3/second"
