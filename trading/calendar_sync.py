"""The daily check of the market calendar against KIS's holiday inquiry: each day they disagree
(market/calendar_sync.py compares them) is alerted. The special days themselves are the
market's (market/calendar_sync.py).
"""

import datetime as dt

from django.utils.translation import gettext

from core import clock
from execution.alerts import alert_raise
from execution.models import Alert
from market.calendar_sync import calendar_differences, overrides_refresh


def calendar_check(*, broker, today: dt.date | None = None) -> list[str]:
    """Compare the next CHECK_DAYS days of the calendar, its special days read afresh, with
    KIS's holiday inquiry (opnd_yn: whether the market opens); alert each disagreement once
    (RECONCILIATION, subject "calendar"). Returns the disagreements."""

    overrides_refresh(force=True)
    differ = calendar_differences(broker=broker, today=today or clock.now_seoul().date())
    for line in differ:
        alert_raise(
            kind=Alert.Kind.RECONCILIATION,
            severity=Alert.Severity.CRITICAL,
            subject="calendar",
            key=f"calendar:{line}",
            message=gettext(
                "The market calendar disagrees with KIS's holiday inquiry: %(difference)s. "
                "Correct it in the admin (special days); until then the engine trades on the "
                "calendar."
            )
            % {"difference": line},
        )
    return differ
