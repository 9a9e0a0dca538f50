import itertools
import json

import pytest

from core import clock
from picks.services import source_token_issue
from picks.models import PickSource

_codes = itertools.count(1)


@pytest.fixture
def make_source(db):
    """A new source with its token: (source, token)."""

    def make(**fields):
        fields.setdefault("rate_limit", "100000/second")
        source = PickSource.objects.create(code=f"t{next(_codes)}-{id(fields) % 10_000}",
                                           **fields)
        return source, source_token_issue(source=source)

    return make


def a_pick(source: PickSource, n: int = 1, /, **overrides) -> dict:
    pick = {"source": source.code, "external_id": f"ext-{n}", "symbol": "005930",
            "side": "BUY", "budget_krw": 1_000_000, "limit_price": 71_000, "score": "0.5",
            "generated_at": clock.now().isoformat()}
    pick.update(overrides)
    return {k: v for k, v in pick.items() if v is not ...}


def post(client, token: str | None, body, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/picks/ingest", data=data, content_type="application/json",
                       **headers)


@pytest.fixture
def fetches():
    """No market read begun by a heads-up before or after the test (routing._fetches)."""
    from picks import routing

    routing._fetches.clear()
    yield routing._fetches
    routing._fetches.clear()


# The KIS simulator fixtures, for the router's tests.
from tests.execution.brokers.conftest import kis_sim, kis_sim_process  # noqa: E402, F401
