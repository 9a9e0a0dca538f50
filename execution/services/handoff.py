"""Where the ledger hands an intent it opened once the transaction commits (I5).

The services import nothing above them: who takes the intent (this process's own sender, the
execution worker's doorbell lanes, the execute task) is execution/dispatch.py's choice, which
execution's AppConfig sets here at startup."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Who takes a committed intent: (an intent id in, True when taken; an order recorded in the
# intent's own transaction in, True when taken, or None: this taker records nothing).
Takers = tuple[Callable[[str], bool] | None, Callable[[Any], bool] | None]


def _nobody() -> Takers:
    return None, None


def _unset(intent_id: str, takers: Takers, order: Any) -> None:
    raise RuntimeError("execution's AppConfig sets the handoff (execution/dispatch.py)")


@dataclass
class Handoff:
    """`takers()` is asked as an intent is written (a taker of recorded orders has its order
    recorded in the same statement); `on_commit(intent_id, takers, order)` registers the
    handover in the caller's transaction."""

    takers: Callable[[], Takers] = _nobody
    on_commit: Callable[[str, Takers, Any], None] = _unset


HANDOFF = Handoff()
