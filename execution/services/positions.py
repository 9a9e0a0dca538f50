import uuid

from ..models import IntentType, OrderIntent
from ..validation import MAX_QTY
from .intents import exit_intent_open


def position_flatten(*, position_id: int, requested_by: str) -> OrderIntent:
    """Sell everything in the position that no other exit already holds, through the ledger."""
    return exit_intent_open(
        position_id=position_id,
        qty=MAX_QTY,
        intent_type=IntentType.FLATTEN,
        idempotency_key=f"flatten:{position_id}:{uuid.uuid4()}",
        reason=f"flatten requested by {requested_by}"[:255],
    )
