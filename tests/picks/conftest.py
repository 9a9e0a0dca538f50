import itertools

import pytest

from core import clock
from execution import dispatch
from execution.broker import DatabaseVault
from execution.models import Reconciliation
from execution.services.reconciliation import reconciliation_run
from picks.models import PickSource
from picks.services import source_token_issue
from tests.support import forget_broker_credentials
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.picks import CLOCK, SendHere
from trading.models import ExitProfile

_codes = itertools.count(1)


@pytest.fixture
def make_source(db):
    """A new source with its token: (source, token)."""

    def make(**fields):
        fields.setdefault("rate_limit", "100000/second")
        source = PickSource.objects.create(code=f"t{next(_codes)}-{id(fields) % 10_000}", **fields)
        return source, source_token_issue(source=source)

    return make


@pytest.fixture
def fetches():
    """No market read begun by a heads-up before or after the test (market.reads._fetches)."""
    from market import reads

    reads._fetches.clear()
    yield reads._fetches
    reads._fetches.clear()


# The router on the simulator, for tests/picks/test_routing.py and test_doorbell.py.
@pytest.fixture
def broker(kis_sim):
    """The simulator and this process at 10:00 on DAY, a client for it, the deposit read (a
    reconciliation), and intents sent from this process as the route task sends them."""
    forget_broker_credentials()
    kis_sim.control("/_sim/clock", {"start": CLOCK.start.isoformat(), "origin": CLOCK.origin})
    client = kis_worker.client_for(sim_dict(kis_sim), rate=50, vault=DatabaseVault())
    with clock.installed(CLOCK):
        run = reconciliation_run(broker=client, trigger=Reconciliation.Trigger.MANUAL)
        assert run.cash_krw == kis_sim.cash
        with dispatch.installed(SendHere(client)):
            yield client


@pytest.fixture
def profile(db):
    return ExitProfile.objects.create(name="news", stop_loss_pct=3)


@pytest.fixture
def source(make_source, profile):
    return make_source(exit_profile=profile)
