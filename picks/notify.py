"""What picks adds to the trader's notifications (execution/notify/): the day's refused picks,
by gate, in the close's summary. Each refusal is told as it is written (routing._reject)."""

import datetime as dt

from django.db.models import Count
from django.utils.translation import gettext as _

from .models import Pick


def refusals_of_day(start: dt.datetime, end: dt.datetime) -> list[str]:
    """The close summary's line: how many picks were refused in [start, end), by gate."""
    by_gate: dict[int, int] = {
        gate: n
        for gate, n in Pick.objects.filter(
            status=Pick.Status.REJECTED, routed_at__gte=start, routed_at__lt=end
        )
        .order_by()
        .values("rejected_gate")
        .annotate(n=Count("id"))
        .values_list("rejected_gate", "n")
        if gate is not None
    }
    total = sum(by_gate.values())
    if not total:
        return [_("Picks refused: none")]
    gates = ", ".join(
        _("gate %(gate)s: %(count)s") % {"gate": Pick.Gate(gate).label, "count": n}
        for gate, n in sorted(by_gate.items())
    )
    return [_("Picks refused: %(count)s (%(gates)s)") % {"count": total, "gates": gates}]
