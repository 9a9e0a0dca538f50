"""Every admin page says so when nothing new goes out: trading HALTED by a person, or held until
the startup reconciliation succeeds (a context processor: one read of the state's single row,
on admin pages only)."""

from django.utils.translation import gettext as _

from execution.models import TradingState


def trading_banner(request) -> dict:
    user = getattr(request, "user", None)
    if not request.path.startswith("/admin/") or user is None or not user.is_staff:
        return {}
    state = TradingState.objects.filter(pk=TradingState.SINGLETON_PK).first()
    if state is None:
        return {}
    if state.awaiting_reconciliation:
        return {
            "trading_banner": _("Trading HALTED: awaiting the startup reconciliation with KIS.")
        }
    if state.state == TradingState.State.HALTED:
        return {
            "trading_banner": _("Trading HALTED: %(reason)s (%(by)s).")
            % {"reason": state.reason, "by": state.changed_by}
        }
    if state.state == TradingState.State.REDUCING:
        return {
            "trading_banner": _("Trading REDUCING, exits only: %(reason)s.")
            % {"reason": state.reason}
        }
    return {}
