# The KIS simulator fixtures, for the exit engine's end-to-end tests.
from tests.execution.brokers.conftest import kis_sim, kis_sim_process  # noqa: F401
