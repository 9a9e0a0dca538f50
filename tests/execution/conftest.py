import pytest

from tests.support.kis import client_for, sim_dict
from tests.support.workers import start_worker, stop_worker


# A real Celery worker on the execution queue, one per test module (test_execution_submit.py,
# test_sender.py).
@pytest.fixture(scope="module")
def worker(kis_sim_process, django_db_setup, tmp_path_factory):
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(kis_sim_process, log)
    yield log
    stop_worker(proc)


# A KIS client of this process that sends step by step (test_fills_sync.py, test_day_end.py).
@pytest.fixture
def broker(kis_sim, settings):
    settings.EXECUTION_AUTO_SUBMIT = False  # these tests send in-process, step by step
    return client_for(sim_dict(kis_sim), rate=200)
