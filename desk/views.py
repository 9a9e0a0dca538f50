"""The desk: one admin page (staff only) a trader runs the day from. It refreshes itself by
fetching its board (the same view, ?board=1) every few seconds; the kill switch posts to it and
asks once more before it changes the trading state through the ledger's service."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from execution.admin_confirm import confirmed
from execution.exceptions import InvalidInput
from execution.models import Reconciliation, TradingState
from execution.services.trading_state import trading_state_set
from execution.tasks import reconcile_task

from .board import board_read, charts_read
from .charts import Mark, day_chart

REFRESH_S = 5


class KillSwitchForm(forms.Form):
    state = forms.ChoiceField(label=_("State"), choices=TradingState.State.choices)
    reason = forms.CharField(label=_("Reason"), max_length=255, strip=True)


def _charts(board) -> list:
    drawn = []
    rows = {r.position.symbol: r for r in board.rows}
    for symbol, (bars, fills) in charts_read(board).items():
        row = rows[symbol]
        line = [(b.minute, b.close) for b in bars]
        if row.last is not None and row.last_at is not None and row.last_at >= board.midnight:
            line.append((row.last_at, row.last))
        marks = [
            Mark(
                at=f.filled_at,
                price=f.price,
                buy=f.order.side == "BUY",
                label=f"{f.order.side} {f.qty:,}",
            )
            for f in fills
        ]
        avg = float(row.position.avg_price) if row.position.qty else None
        label = f"{symbol} {row.name}".strip()
        drawn.append((label, day_chart(label, line, marks, avg_price=avg)))
    return drawn


def _may_switch(request) -> bool:
    return request.user.has_perm("execution.change_tradingstate")


def _may_reconcile(request) -> bool:
    return request.user.has_perm("execution.view_reconciliation") and request.user.has_perm(
        "execution.change_tradingstate"
    )


def _reconcile(request):
    """Queue a reconciliation with KIS (the beat's task, trigger MANUAL) once confirmed; until
    then, the page asking for it."""
    if not _may_reconcile(request):
        raise PermissionDenied
    if not confirmed(request):
        return _page(request, reconciling=True)
    reconcile_task.delay(trigger=Reconciliation.Trigger.MANUAL)
    messages.success(
        request,
        _("A reconciliation with KIS is under way: its result shows under Reconciliations."),
    )
    return HttpResponseRedirect(reverse("desk"))


def _switch(request):
    """Set the trading state through the ledger's service once confirmed; until then, the page
    asking for it (or the form's errors)."""
    if not _may_switch(request):
        raise PermissionDenied
    form = KillSwitchForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form)
    if not confirmed(request):
        return _page(request, form=form, confirming=form.cleaned_data)
    try:
        trading_state_set(
            state=form.cleaned_data["state"],
            reason=form.cleaned_data["reason"],
            changed_by=request.user.get_username(),
        )
    except InvalidInput as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.translated())
        return _page(request, form=form)
    messages.success(
        request, _("Trading is now %(state)s.") % {"state": form.cleaned_data["state"]}
    )
    return HttpResponseRedirect(reverse("desk"))


def _page(request, *, form=None, confirming=None, reconciling=False):
    board = board_read()
    context = {"board": board, "charts": _charts(board), "refresh_s": REFRESH_S}
    if request.GET.get("board"):
        return TemplateResponse(request, "desk/board.html", context)
    return TemplateResponse(
        request,
        "desk/desk.html",
        {
            **admin.site.each_context(request),
            **context,
            "title": _("Desk"),
            "is_nav_sidebar_enabled": False,  # the board takes the page's width
            "form": form or KillSwitchForm(),
            "confirming": confirming,
            "reconciling": reconciling,
            "may_switch": _may_switch(request),
            "may_reconcile": _may_reconcile(request),
        },
    )


def desk(request):
    if request.method == "POST":
        op = request.POST.get("op")
        if op == "reconcile":
            return _reconcile(request)
        if op == "state":
            return _switch(request)
    return _page(request)
