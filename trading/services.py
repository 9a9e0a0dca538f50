"""The exit engine's writes: evaluate open positions against their profiles and open the exits
that fire, through the ledger.

An evaluation screens without locks (the rules are pure, trading/rules.py). A position whose
screen decides an exit is decided again under its exit-state row lock, so two evaluators at
once (a tick and the cadence pass) open one exit and advance the tiers once. The ledger then
takes the position's lock and clamps the exit to what is available (I1, I2): the screen never
decides, the locked rows do (I3).
"""

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.db import transaction

from aegis import clock
from execution.exceptions import InsufficientAvailableQty, TradingNotAllowed
from execution.models import OrderIntent, Position
from execution.services import exit_intent_open

from . import market_calendar
from .models import BestPrice, ExitProfile, PositionExitState
from .rules import Decision, Holding, Rules, Tier, Trade, evaluate

logger = logging.getLogger("aegis.trading")

# A trade this soon after the open counts as the opening trade for GAP_DOWN.
OPENING_SPAN = dt.timedelta(seconds=60)


def profile_rules(profile: ExitProfile, tiers) -> Rules:
    return Rules(
        stop_loss_pct=profile.stop_loss_pct,
        tiers=tuple(Tier(t.gain_pct, t.sell_pct) for t in sorted(tiers, key=lambda t: t.gain_pct)),
        trailing_activation_pct=profile.trailing_activation_pct,
        trailing_pct=profile.trailing_pct,
        gap_down_pct=profile.gap_down_pct,
        time_exit_at=profile.time_exit_at,
        max_holding_days=profile.max_holding_days,
    )


def _holding(position: Position, state: PositionExitState, today: dt.date) -> Holding:
    opened = position.opened_at.astimezone(clock.SEOUL).date()
    return Holding(qty=position.qty, available=position.qty - position.reserved_qty,
                   avg_price=position.avg_price,
                   held_days=market_calendar.trading_days_between(opened, today),
                   high_water_mark=state.high_water_mark, peak_qty=state.peak_qty,
                   tiers_done=state.tiers_done)


def _trade(best: BestPrice) -> Trade:
    at = best.event_at.astimezone(clock.SEOUL)
    session = market_calendar.session(at.date())
    opening = session is not None and session.open <= at < session.open + OPENING_SPAN
    return Trade(price=best.price, at=at, lower_limit=best.lower_limit,
                 prev_close=best.prev_close, opening=opening)


@dataclass
class PassResult:
    evaluated: int = 0
    exits: int = 0
    skipped_no_price: int = 0


def exit_pass(*, symbols: list[str] | None = None) -> PassResult:
    """Evaluate every open position with an exit profile (or those of `symbols`) at its best
    price, and open the exits that fire."""
    today = clock.now_seoul().date()
    states = PositionExitState.objects.select_related("position").filter(
        position__status=Position.Status.OPEN, position__qty__gt=0)
    if symbols is not None:
        states = states.filter(position__symbol__in=symbols)
    states = list(states)
    prices = {b.symbol: (b, _trade(b)) for b in BestPrice.objects.filter(
        symbol__in={s.position.symbol for s in states})}
    rules = {p.pk: profile_rules(p, p.tiers.all()) for p in ExitProfile.objects.filter(
        pk__in={s.profile_id for s in states}).prefetch_related("tiers")}
    result = PassResult()
    for state in states:
        if state.position.symbol not in prices:
            result.skipped_no_price += 1
            continue
        best, trade = prices[state.position.symbol]
        result.evaluated += 1
        ev = evaluate(rules[state.profile_id], _holding(state.position, state, today), trade)
        if ev.decision is not None:
            result.exits += exit_decide(position_id=state.position_id, rules=rules[state.profile_id],
                                        best=best) is not None
        elif (ev.high_water_mark, ev.peak_qty) != (state.high_water_mark, state.peak_qty):
            PositionExitState.objects.filter(pk=state.pk).update(
                high_water_mark=ev.high_water_mark, peak_qty=ev.peak_qty)
    return result


def exit_decide(*, position_id: int, rules: Rules, best: BestPrice) -> OrderIntent | None:
    """Decide again under the exit-state lock and open the exit through the ledger, or None
    when, seen from the locked rows, nothing fires any more."""
    today = clock.now_seoul().date()
    with transaction.atomic():
        state = PositionExitState.objects.select_for_update(of=("self",)).select_related(
            "position").get(pk=position_id)
        position = state.position
        if position.status != Position.Status.OPEN:
            return None
        ev = evaluate(rules, _holding(position, state, today), _trade(best))
        state.high_water_mark, state.peak_qty = ev.high_water_mark, ev.peak_qty
        decision: Decision | None = ev.decision
        intent = None
        if decision is not None:
            try:
                intent = exit_intent_open(
                    position_id=position_id, qty=decision.qty, intent_type=decision.rule,
                    idempotency_key=f"exit:{position_id}:{decision.rule}:{uuid.uuid4()}",
                    reason=decision.reason[:255], limit_price=decision.limit_price,
                    event_at=decision.at)
            except (InsufficientAvailableQty, TradingNotAllowed) as exc:
                logger.info("exit.not_opened position_id=%s rule=%s: %s", position_id,
                            decision.rule, exc)
            else:
                state.tiers_done = ev.tiers_done
                logger.info("exit.opened position_id=%s rule=%s qty=%s price=%s reason=%s",
                            position_id, decision.rule, intent.qty, decision.price,
                            decision.reason, extra={"position_id": position_id,
                                                    "rule": decision.rule,
                                                    "intent_id": str(intent.pk)})
        state.save(update_fields=["high_water_mark", "peak_qty", "tiers_done", "updated_at"])
    return intent
