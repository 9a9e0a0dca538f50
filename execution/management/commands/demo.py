"""`make demo`: the ledger refusing an oversell, on the embedded default (SQLite, no server).

A position of 100 shares is bought through the ledger; then eight exit requests of 30 shares race
each other from eight threads at the same instant. The ledger grants exactly 100 shares in all,
clamps one request and refuses the rest. A partial fill and a cancel follow, and the released
shares become available again.

Broker calls are stood in for by local order numbers here; the KIS client and its simulator
replace them in the execution work that follows.
"""

import itertools
import json
import threading
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from execution import services
from execution.exceptions import InsufficientAvailableQty
from execution.models import IntentType, Position
from execution.selectors import position_ledger_breakdown
from trading.models import ExitProfile, PositionExitState, TakeProfitTier

SYMBOL = "005930"
RACERS = 8
EACH = 30
_order_numbers = itertools.count(1)


class Command(BaseCommand):
    help = "Show the position ledger refusing an oversell under a race (embedded default)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="End with a JSON summary line.")

    def handle(self, *args, **options):
        call_command("migrate", verbosity=0)
        db = settings.DATABASES["default"]
        self.say(f"Aegis demo · database {db['ENGINE'].rsplit('.', 1)[-1]} ({db['NAME']}), "
                 f"tasks {'in-process' if settings.CELERY_TASK_ALWAYS_EAGER else 'on the broker'}")
        services.trading_state_set(state="ACTIVE", reason="demo", changed_by="demo")

        position = self.buy(100, fills=[(60, 71_000), (40, 71_100)])
        self.ledger(position, "after the entry filled")

        self.say(f"\n{RACERS} exit requests of {EACH} shares each, released at the same instant:")
        outcomes = self.race(position)
        for name, outcome in sorted(outcomes.items()):
            self.say(f"  {name:<9} {outcome['text']}")
        granted = [o["granted"] for o in outcomes.values()]
        self.say(f"  granted {sum(granted)} of {RACERS * EACH} requested; "
                 f"refused {granted.count(0)} request(s)")
        self.ledger(position, "after the race")

        first = next(o["intent_id"] for o in outcomes.values() if o["granted"] == EACH)
        order = services.order_open(intent_id=first)
        services.order_mark_submitted(order_id=order.pk, broker_order_no=self.order_no())
        services.fill_apply(order_id=order.pk, broker_fill_key=f"demo:{uuid.uuid4()}", qty=20,
                            price=72_500)
        services.order_mark_cancelled(order_id=order.pk, reason="limit order timed out")
        self.say(f"\nOne exit order: 20 of {EACH} filled at 72,500, the rest cancelled.")
        self.ledger(position, "after the partial fill and cancel")

        late = self.try_exit(position, EACH)
        self.say(f"A new exit request of {EACH}: {late['text']}")
        self.ledger(position, "at the end")

        position.refresh_from_db()
        breakdown = position_ledger_breakdown(position=position)
        oversells = 0 if breakdown.consistent and breakdown.available_qty >= 0 else 1
        self.say(f"\nOversells: {oversells}. The ledger equation holds: "
                 f"{breakdown.qty} held = {breakdown.locked_from_rows} locked + "
                 f"{breakdown.available_qty} available.")
        if options["json"]:
            self.stdout.write(json.dumps({
                "granted": sorted(granted, reverse=True),
                "refused": granted.count(0),
                "late_granted": late["granted"],
                "qty": breakdown.qty,
                "locked": breakdown.locked_from_rows,
                "available": breakdown.available_qty,
                "realized_pnl": str(position.realized_pnl),
                "oversells": oversells,
            }))

    # --- steps ----------------------------------------------------------------------------------
    def buy(self, qty: int, fills: list[tuple[int, int]]) -> Position:
        profile, _ = ExitProfile.objects.get_or_create(
            name="demo swing",
            defaults={"stop_loss_pct": Decimal("3"), "trailing_activation_pct": Decimal("4"),
                      "trailing_pct": Decimal("2"), "gap_down_pct": Decimal("5")},
        )
        TakeProfitTier.objects.get_or_create(profile=profile, gain_pct=Decimal("5"),
                                             defaults={"sell_pct": Decimal("50")})
        intent = services.entry_intent_open(symbol=SYMBOL, qty=qty,
                                            idempotency_key=f"demo-entry:{uuid.uuid4()}",
                                            limit_price=71_100, reason="demo pick")
        order = services.order_open(intent_id=intent.pk)
        services.order_mark_submitted(order_id=order.pk, broker_order_no=self.order_no())
        for fill_qty, price in fills:
            services.fill_apply(order_id=order.pk, broker_fill_key=f"demo:{uuid.uuid4()}",
                                qty=fill_qty, price=price)
        position = Position.objects.get(pk=intent.position_id)
        PositionExitState.objects.get_or_create(position=position, defaults={"profile": profile})
        self.say(f"\nBought {qty} × {SYMBOL} through the ledger: "
                 + ", ".join(f"{q} @ {p:,}" for q, p in fills))
        return position

    def race(self, position: Position) -> dict[str, dict]:
        barrier = threading.Barrier(RACERS)
        outcomes: dict[str, dict] = {}

        def racer(n: int) -> None:
            try:
                barrier.wait()
                outcomes[f"thread {n}"] = self.try_exit(position, EACH)
            finally:
                connection.close()  # each thread has its own connection

        threads = [threading.Thread(target=racer, args=(n,)) for n in range(1, RACERS + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return outcomes

    def try_exit(self, position: Position, qty: int) -> dict:
        try:
            intent = services.exit_intent_open(
                position_id=position.pk, qty=qty, intent_type=IntentType.EXIT_STOP_LOSS,
                idempotency_key=f"demo-exit:{uuid.uuid4()}", reason="demo stop loss")
        except InsufficientAvailableQty as exc:
            return {"granted": 0, "text": f"refused: 0 available (locked {exc.locked})"}
        clamped = " (clamped to what was left)" if intent.qty < qty else ""
        return {"granted": intent.qty, "intent_id": intent.pk,
                "text": f"granted {intent.qty}{clamped}"}

    def ledger(self, position: Position, when: str) -> None:
        position.refresh_from_db()
        b = position_ledger_breakdown(position=position)
        self.say(f"  ledger {when}: held {b.qty}, locked {b.locked_from_rows} "
                 f"(orders {b.locked_by_orders}, intents {b.locked_by_intents}), "
                 f"available {b.available_qty}, avg {position.avg_price:,.2f}")

    def order_no(self) -> str:
        return f"DEMO{next(_order_numbers):06d}"

    def say(self, text: str) -> None:
        self.stdout.write(text)
