import datetime as dt

from django.db.models.functions import Now
from django.utils.translation import gettext, gettext_noop

from core import clock

from ..alerts import alert_raise
from ..exceptions import InvalidInput, TradingNotAllowed
from ..gate import allows
from ..models import Alert, TradingState

State = TradingState.State


def trading_state_get() -> str:
    """The state in force (ACTIVE, REDUCING or HALTED): the one set, or HALTED while the startup
    gate waits for a successful reconciliation with KIS."""
    row = (
        TradingState.objects.filter(pk=TradingState.SINGLETON_PK)
        .only("state", "reconcile_required_since", "reconciled_at")
        .first()
    )
    if row is None:
        row = TradingState.objects.get_or_create(pk=TradingState.SINGLETON_PK)[0]
    return row.in_force


def _state_update(**fields) -> None:
    TradingState.objects.get_or_create(pk=TradingState.SINGLETON_PK)
    TradingState.objects.filter(pk=TradingState.SINGLETON_PK).update(**fields)


def reconciliation_require() -> None:
    """Close the startup gate: nothing goes out until a reconciliation succeeds from now on.
    Both moments are the database's clock (Now()): the process that closes the gate
    and the worker that reconciles may run on hosts whose clocks differ."""
    _state_update(reconcile_required_since=Now())


def reconciliation_succeeded(*, at) -> None:
    """A reconciliation with KIS succeeded (`at` by its own clock, kept on its row): it opens
    the startup gate if it is closed, as of now on the database's clock."""
    _state_update(reconciled_at=Now())


def market_closed_refused(*, reason: str) -> None:
    """KIS refused an order as out of its market hours: noted on the trading state (the exit
    engine waits for the next phase from it) and alerted once a Seoul day."""

    now = clock.now()
    _state_update(market_closed_at=now, market_closed_reason=reason[:255])
    alert_raise(
        kind=Alert.Kind.ORDER,
        severity=Alert.Severity.WARNING,
        subject="KRX",
        key=f"market-closed:{clock.now_seoul():%Y%m%d}",
        message=gettext(
            "KIS refused an order as out of market hours at %(at)s KST (%(reason)s). The exit "
            "engine decides nothing more until the next market phase; check the market "
            "calendar (special closures, late opens) in the admin."
        )
        % {"at": f"{now.astimezone(clock.SEOUL):%Y-%m-%d %H:%M:%S}", "reason": reason},
    )


def market_closed_at() -> dt.datetime | None:
    """When KIS last refused an order as out of market hours, or None."""
    return (
        TradingState.objects.filter(pk=TradingState.SINGLETON_PK)
        .values_list("market_closed_at", flat=True)
        .first()
    )


def trading_state_set(*, state: str, reason: str, changed_by: str) -> TradingState:
    if state not in State.values:
        raise InvalidInput(
            "state",
            gettext_noop("must be one of %(states)s, got %(state)s."),
            states=", ".join(State.values),
            state=repr(state),
        )
    if not reason or not reason.strip():
        raise InvalidInput("reason", gettext_noop("say why the trading state changes."))
    row, _ = TradingState.objects.update_or_create(
        pk=TradingState.SINGLETON_PK,
        defaults={
            "state": state,
            "reason": reason.strip()[:255],
            "changed_by": changed_by[:150],
            "changed_at": clock.now(),
        },
    )
    return row


def require_allowed(state: str | None, *, side: str, operation: str) -> None:
    """Exits (SELL) go out in ACTIVE and REDUCING; entries (BUY) only in ACTIVE. `state` as
    read by trading_state_in_force_sql, or None to read it now (allows_sql: the same rule
    inside a statement)."""
    if state is None:
        state = trading_state_get()
    if not allows(state, side):
        raise TradingNotAllowed(state=state, operation=operation)


def require_state_allows(*, side: str, operation: str) -> None:
    """Exits (SELL) go out in ACTIVE and REDUCING; entries (BUY) only in ACTIVE."""
    require_allowed(None, side=side, operation=operation)
